"""What every group of routes shares about HTTP itself (knows Litestar; no service, no storage)."""
