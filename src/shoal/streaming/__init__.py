"""EventBus protocol, Redis Streams and in-memory buses, SSE encoding. No DB."""
