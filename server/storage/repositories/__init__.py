"""Repositories: one module per aggregate; each takes the request's `AsyncSession` and never commits."""
