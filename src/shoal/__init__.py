"""shoal: a self-hostable backend for autonomous AI agents."""

__version__ = "0.1.0"
