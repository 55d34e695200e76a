"""The companion's core: config, device key, request signing, device API client and QR reading.

It knows HTTP (through an injected httpx client) but no user interface: the headless CLI and the Textual
app are both thin layers over it. It never imports Textual, nor anything from `server`.
"""
