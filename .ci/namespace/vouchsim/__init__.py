"""Vouchsim: a testbed for OAuth-protected MCP with trusted-device pairing.

One import namespace, so an installed Vouchsim collides with no one's `server` or `companion` package:
`vouchsim.server` (the Litestar app and the `vouchsim` command), `vouchsim.companion` (the trusted device: CLI,
TUI, the headless test kit in `vouchsim.companion.testing`) and `vouchsim.testing` (the pytest plugin).

In a checkout, `server/` and `companion/` sit at the repository's top level; this folder (`.ci/namespace/vouchsim`)
links to them and is what an editable install puts on `sys.path` (pyproject.toml, `dev-mode-dirs`). A built
wheel holds the real files under `vouchsim/`.
"""

__version__ = "0.1.0"
