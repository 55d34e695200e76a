"""The OAuth 2.1 authorization server: discovery, registration, the authorization page, tokens."""
