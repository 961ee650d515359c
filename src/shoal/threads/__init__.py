"""Projects, threads and messages."""
