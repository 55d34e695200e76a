"""A real https server on loopback that serves Client ID Metadata Documents, with its own CA (trustme).

Each test says what a path answers (`DocumentServer.serve`): a document with cache headers, a redirect, a 404, the
wrong media type, a body streamed in chunks without a length, or an answer held back until the client gives up.
The certificate names 127.0.0.1, ::1, localhost and `cimd.test` (a name only a test resolver knows), so a test can
check that the fetcher connects to the address it vetted while TLS checks the name.
"""

from __future__ import annotations

import functools
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

TEST_HOST = "cimd.test"


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/json"
    chunks: int = 0  # > 0: the body is sent this many times, chunked, with no Content-Length
    hold: bool = False  # wait (until the server stops) before answering


def document(url: str, **fields: Any) -> dict[str, Any]:
    """A valid document for `url`; `fields` override or add (None removes)."""
    body: dict[str, Any] = {
        "client_id": url,
        "client_name": "Example MCP Client",
        "redirect_uris": ["http://127.0.0.1:3000/callback", "http://localhost:3000/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    body.update(fields)
    return {key: value for key, value in body.items() if value is not None}


@functools.cache
def _authority() -> tuple[trustme.CA, trustme.LeafCert]:
    """One CA and server certificate for the whole run (key generation is the slow part)."""
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    return ca, ca.issue_cert("127.0.0.1", "::1", "localhost", TEST_HOST, key_type=trustme.KeyType.ECDSA)


class DocumentServer:
    def __init__(self, directory: Path) -> None:
        self.ca, certificate = _authority()
        self.ca_file = directory / "cimd-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.answers: dict[str, Answer] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._stopping = threading.Event()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> DocumentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    @property
    def host_key(self) -> str:
        return f"127.0.0.1:{self.port}"

    def serve(self, path: str, body: dict[str, Any] | bytes | str = b"", **answer: Any) -> None:
        raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        self.answers[path] = Answer(body=raw, **answer)

    def fetches(self, path: str) -> int:
        return sum(1 for seen, _headers in self.requests if seen == path)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                answer = server.answers.get(self.path, Answer(status=404, body=b"not found", content_type="text/plain"))
                if answer.hold:
                    server._stopping.wait(30)
                    return
                self.send_response(answer.status)
                if answer.content_type is not None:
                    self.send_header("Content-Type", answer.content_type)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.chunks:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for _ in range(answer.chunks):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(answer.body), answer.body))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

        return Handler


def served(directory: Path) -> Iterator[DocumentServer]:
    with DocumentServer(directory) as server:
        yield server
