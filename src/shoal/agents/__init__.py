"""Agent configurations: system prompt, model, tools offered; one default per account."""
