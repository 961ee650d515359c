"""Tokens, keys, password and API-key hashing, the Principal. No SQL, no HTTP."""
