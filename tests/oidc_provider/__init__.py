"""A real OpenID Connect provider for the sign-in tests (never shipped):
django-oauth-toolkit's, in its own process on loopback. `provider.py` starts
and stops it; `serve.py` is what runs in that process."""
