"""The companion's core, the one headless device every front end stands on: config, device key, request signing,
the device API client, QR reading, decisions and rules, the delegation follower and decision policy (`follower`),
the headless authorization page (`authorization`) and how everything is spelled (`text`).

It knows HTTP (through an injected httpx client) but no user interface: the headless CLI, the Textual app, the
side-car and the test kit are all thin layers over it. It never imports Textual, nor anything from `server`, nor
any other part of the companion (import-linter contracts in pyproject.toml).
"""
