"""`vouchsim companion demo`: the whole story in one terminal.

A live server (a subprocess, `server.py`), a scripted MCP agent (`agent.py`, the official MCP SDK over
HTTP) and the companion TUI with an agent panel beside it (`app.py`). Like the rest of the companion, this
package never imports the server: the server runs as `python -m vouchsim.server` and is reached over its port.
"""
