"""A small loopback reverse proxy that adds `Authorization: Bearer <token>` to requests that carry none, for
clients that cannot do OAuth (the MCP conformance suite), and changes nothing else: `Host`, `Origin` and every
other header reach the server as the client sent them, and responses (SSE streams included) come back as they
are, chunk by chunk. (Whitespace around a header value is not part of it, RFC 9110 §5.5: it is dropped.)

    python -m e2e.bearer_proxy --listen 127.0.0.1:8790 --target http://127.0.0.1:8741 --token-file PATH

It prints `proxy listening on http://HOST:PORT` once it accepts connections. Loopback only: it refuses to listen
on or forward to anything else.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

# Hop-by-hop headers (RFC 9110 §7.6.1) are the connection's own, not the message's.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BearerProxy:
    """An ASGI app forwarding every HTTP request to `target` with the bearer token added."""

    def __init__(self, target: str, token: str) -> None:
        host = urlsplit(target).hostname or ""
        if not _loopback(host):
            raise ValueError(f"the proxy forwards to loopback only, not {host!r}")
        self.target = target.rstrip("/")
        self.token = token
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(120.0), follow_redirects=False)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
            await self.client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        # Values without their surrounding whitespace: RFC 9110 §5.5 says it is not part of the value (and the
        # outgoing HTTP library refuses to send it).
        headers = [
            (name.decode("latin-1"), value.decode("latin-1").strip(" \t"))
            for name, value in scope["headers"]
            if name.decode("latin-1").lower() not in _HOP_BY_HOP
        ]
        if not any(name.lower() == "authorization" for name, _ in headers):
            headers.append(("Authorization", f"Bearer {self.token}"))
        url = self.target + scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        request = self.client.build_request(scope["method"], url, headers=headers, content=body)
        response = await self.client.send(request, stream=True)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (name, value)
                        for name, value in response.headers.raw
                        if name.decode("latin-1").lower() not in _HOP_BY_HOP
                        and name.decode("latin-1").lower() != "content-length"
                    ],
                }
            )
            async for chunk in _chunks(response):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


async def _chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    async for chunk in response.aiter_raw():
        if chunk:
            yield chunk


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m e2e.bearer_proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT on loopback")
    parser.add_argument("--target", required=True, help="the server's base URL, e.g. http://127.0.0.1:8741")
    parser.add_argument("--token-file", required=True, type=Path, help="a file holding the access token")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not _loopback(host):
        raise SystemExit(f"bearer_proxy: listen on loopback only, not {host!r}")
    app = BearerProxy(args.target, args.token_file.read_text().strip())
    config = uvicorn.Config(
        app, host=host, port=int(port), log_level="warning", proxy_headers=False, server_header=False, date_header=False
    )
    server = uvicorn.Server(config)
    original = server.startup

    async def startup(*a: Any, **kw: Any) -> None:
        await original(*a, **kw)
        print(f"proxy listening on http://{host}:{port}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run()


if __name__ == "__main__":
    main(sys.argv[1:])
