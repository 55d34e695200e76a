"""The baseline of every figure of `python -m e2e.bench`: a Litestar hello-world answering a JSON POST, served by the
same uvicorn (same loop, same HTTP parser, one process) as Vouchsim, so a ratio to it is what our own code costs.

    python -m uvicorn e2e.bench.baseline:app --port PORT
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, get, post


@post("/hello", status_code=200)
async def hello(data: dict[str, Any]) -> dict[str, Any]:
    """Reads a JSON-RPC-shaped body and answers with its id, as `/mcp` does."""
    return {"jsonrpc": "2.0", "id": data.get("id"), "result": {"hello": "world"}}


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar([hello, healthz])
