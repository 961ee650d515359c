"""Users, accounts, members, API keys, the GoTrue-compatible router, CurrentPrincipal."""
