"""Runs: state machine, start/stop/claim/lease/sweeper, multitask, SSE routes, the actor."""
