"""Billing and usage: the usage ledger, plans, limits, Stripe (DESIGN.md §7)."""
