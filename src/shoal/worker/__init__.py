"""Broker (RabbitMQ | in-process), enqueue-after-commit, generic executor."""
