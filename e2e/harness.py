"""The e2e harness: a live server process, the companion's real CLI, and a headless browser, all over HTTP.

Nothing here imports the server: it runs as `python -m vouchsim.server serve` in a process of its own and is reached
only through its port. The companion is driven through its CLI in a process of its own (as a person or a script
would use it), with its `DeviceApiClient` used in-process only to look at what the server says about the device.
Both processes are forked from the suite's fork server, which imported them once (`e2e/forked.py`).
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import anyio
import httpx

from e2e import forked
from vouchsim.companion.core.authorization import PageParser
from vouchsim.companion.core.client import DeviceApiClient
from vouchsim.companion.core.keystore import Keystore
from vouchsim.companion.server_process import ServerProcess, ServerStartError
from vouchsim.companion.server_process import clean_environment as clean_environment  # the e2e tests' too
from vouchsim.companion.server_process import free_port as free_port

REPO = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT = 60.0  # seconds for one companion CLI command
HTTP_TIMEOUT = 30.0
TRACEBACK = "Traceback (most recent call last)"
SERVER_ERROR = re.compile(r'^INFO: .*"([A-Z]+) (\S+) HTTP/[\d.]+" (5\d\d)', re.MULTILINE)  # uvicorn's access log
# What the testbed logs when a fault answers a request itself (`vouchsim serve --testbed`): such a 5xx was asked for.
INJECTED = re.compile(r"testbed fault \S+ answered ([A-Z]+) (\S+) with (5\d\d)")
PAIRING_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


def _first_server_error(text: str) -> int:
    """Where the first 5xx answer that no testbed fault asked for was logged; -1 when there is none."""
    injected: dict[tuple[str, str, str], int] = {}
    for found in INJECTED.finditer(text):
        injected_key = (found[1], found[2], found[3])
        injected[injected_key] = injected.get(injected_key, 0) + 1
    for found in SERVER_ERROR.finditer(text):
        method, target, status = found.groups()
        key = (method, target.split("?")[0], status)
        if injected.get(key, 0) > 0:
            injected[key] -= 1
            continue
        return found.start()
    return -1


# --- databases -----------------------------------------------------------------------------------------


def _admin_dsn(url: str) -> tuple[str, str]:
    """asyncpg DSN of the admin database named in `url`, and the URL prefix to append a database name to."""
    base, _, database = url.rpartition("/")
    return base.replace("postgresql+asyncpg://", "postgresql://") + "/" + database, base


def _postgres(admin_url: str, sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(_admin_dsn(admin_url)[0])
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


@dataclass
class Databases:
    """Fresh databases for live servers: SQLite files in a temp dir, or PostgreSQL databases dropped after.

    With a `template` (see `migrated`), each is a copy of it, so a server finds its schema ready; without one, each
    is empty and its server makes the schema itself (`storage.migrate.create_at_head`: ~20 ms; before, a child
    `vouchsim migrate` cost about 1 s of CPU and of wall time per start, measured on 2 cores)."""

    backend: str  # "sqlite" or "postgres"
    directory: Path
    postgres_url: str = ""
    created: list[str] = field(default_factory=list)
    template: str = ""  # a migrated SQLite file or PostgreSQL database to copy; "" for empty databases

    def new(self) -> str:
        if self.backend == "sqlite":
            path = self.directory / f"vouchsim-{secrets.token_hex(4)}.db"
            if self.template:
                shutil.copyfile(self.template, path)
            return f"sqlite+aiosqlite:///{path}"
        name = f"vouchsim_e2e_{secrets.token_hex(6)}"
        _postgres(
            self.postgres_url, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{self.template}"' if self.template else "")
        )
        self.created.append(name)
        return f"{_admin_dsn(self.postgres_url)[1]}/{name}"

    def migrated(self) -> str:
        """A new database that `vouchsim migrate` brought to the newest schema, as a template for other `Databases`:
        the SQLite file's path or the PostgreSQL database's name (nothing may stay connected to it)."""
        url = self.new()
        done = subprocess.run(
            [sys.executable, "-P", "-m", "vouchsim.server", "migrate", "--database-url", url],
            cwd=REPO,
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise ServerFailed(f"vouchsim migrate failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return url.removeprefix("sqlite+aiosqlite:///") if self.backend == "sqlite" else url.rsplit("/", 1)[1]

    def drop_all(self) -> None:
        while self.created:
            _postgres(self.postgres_url, f'DROP DATABASE IF EXISTS "{self.created.pop()}" WITH (FORCE)')


# --- the server ----------------------------------------------------------------------------------------


class ServerFailed(AssertionError):
    """The server process did not start, or logged a traceback or a 5xx answer."""


class LiveServer(ServerProcess):
    """One `python -m vouchsim.server serve` process on 127.0.0.1 (companion.server_process: start, /healthz, stop),
    logging to a file that the suite checks for tracebacks and 5xx answers."""

    def __init__(self, database_url: str, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        super().__init__(log_path.parent, database_url=database_url, env=env, log_path=log_path)
        self.blamed = False  # a test already failed for an error in this log; do not report it twice

    def launch(self) -> LiveServer:
        """Forked from the suite's fork server rather than a new interpreter (`e2e/forked.py`)."""
        atexit.register(self.stop)
        self.process = forked.start(
            "vouchsim.server", self.serve_arguments(), env=clean_environment(self.env), cwd=REPO, stdout=self.log_path
        )
        return self

    def start(self, on_progress: Callable[[str], None] | None = None) -> LiveServer:
        try:
            super().start(on_progress)
        except ServerStartError as error:
            raise ServerFailed(str(error)) from None
        return self

    def log(self, since: int = 0) -> str:
        try:
            return self.log_path.read_bytes()[since:].decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def tracebacks(self, since: int = 0) -> str | None:
        """The log from the first traceback or 5xx answer on (after byte `since`), or None when there is none.

        5xx answers count too: Litestar logs an unhandled exception's traceback only in debug mode, so in a
        served process the access log line is often the only trace of one. Those a testbed fault gave (it logs
        each one it answers) do not.
        """
        text = self.log(since)
        found = [at for at in (text.find(TRACEBACK), _first_server_error(text)) if at >= 0]
        if not found:
            return None
        at = min(found)
        start = text.rfind("\n", 0, max(0, at - 300)) + 1
        return text[start : at + 4000]


@dataclass
class ServerFactory:
    """Starts live servers on fresh databases and, at the end, stops them and checks their logs."""

    databases: Databases
    log_dir: Path
    servers: list[LiveServer] = field(default_factory=list)

    def start(self, env: Mapping[str, str] | None = None, *, fixed_issuer: bool = False) -> LiveServer:
        """A new server on a new database, once it answers /healthz. Blocking: from a coroutine, call it
        through `anyio.to_thread.run_sync`. `fixed_issuer`: its issuer is its own base URL whatever `Host` a
        request carries (VOUCHSIM_ISSUER), so it can be reached through a proxy that keeps `Host` as sent."""
        server = LiveServer(self.databases.new(), self.log_dir / f"server-{len(self.servers)}.log", env)
        if fixed_issuer:
            server.env["VOUCHSIM_ISSUER"] = server.base_url
        self.servers.append(server)
        return server.start()

    def close(self) -> None:
        """Stop every server; ServerFailed if any logged a traceback (the databases are dropped either way)."""
        failures = []
        try:
            for server in self.servers:
                server.stop()
                if not server.blamed and (found := server.tracebacks()) is not None:
                    failures.append(f"{server.base_url} ({server.log_path}):\n{found}")
        finally:
            self.databases.drop_all()
        if failures:
            raise ServerFailed("a server logged a traceback or a 5xx answer:\n" + "\n\n".join(failures))


# --- OAuth client side ---------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = b64url(secrets.token_bytes(32))
        return cls(verifier, b64url(hashlib.sha256(verifier.encode()).digest()))


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


async def register_client(http: httpx.AsyncClient, base_url: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "client_name": "Vouchsim e2e agent",
        "redirect_uris": [f"http://127.0.0.1:{free_port()}/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "identity delegation",
        **overrides,
    }
    response = await http.post(f"{base_url}/oauth/register", json=body)
    assert response.status_code == 201, response.text
    info: dict[str, Any] = response.json()
    return info


def authorization_url(base_url: str, client: dict[str, Any], pkce: Pkce | None, **overrides: str | None) -> str:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": client["redirect_uris"][0],
        "scope": "identity delegation",
        "state": secrets.token_urlsafe(16),
        "code_challenge": pkce.challenge if pkce else None,
        "code_challenge_method": "S256" if pkce else None,
        "resource": f"{base_url}/mcp",
        **overrides,
    }
    return f"{base_url}/oauth/authorize?{urlencode({k: v for k, v in params.items() if v is not None})}"


async def exchange_code(
    http: httpx.AsyncClient, base_url: str, client: dict[str, Any], code: str, verifier: str
) -> httpx.Response:
    return await http.post(
        f"{base_url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client["redirect_uris"][0],
            "code_verifier": verifier,
            "client_id": client["client_id"],
            "resource": f"{base_url}/mcp",
        },
    )


async def refresh(http: httpx.AsyncClient, base_url: str, client: dict[str, Any], token: str) -> httpx.Response:
    return await http.post(
        f"{base_url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": client["client_id"],
        },
    )


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "vouchsim-e2e", "version": "0"},
    },
}


async def mcp_initialize(
    http: httpx.AsyncClient, url: str, access_token: str, *, host: str | None = None
) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {access_token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }
    if host is not None:
        headers["Host"] = host
    return await http.post(url, json=INITIALIZE, headers=headers)


def www_authenticate(response: httpx.Response) -> dict[str, str]:
    """The parameters of a `Bearer` challenge (RFC 6750 §3)."""
    header = response.headers.get("www-authenticate", "")
    assert header.startswith("Bearer"), header
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', header))


# --- the companion (the person's trusted device) -------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = self.stdout.strip().splitlines()
        return lines[-1].strip() if lines else ""


async def run_companion(*args: str | Path) -> CommandResult:
    """`python -m vouchsim.companion ARGS` in a process of its own (forked: `e2e/forked.py`), without blocking the
    event loop."""
    with tempfile.TemporaryDirectory(prefix="companion-") as directory:
        stdout, stderr = Path(directory) / "stdout", Path(directory) / "stderr"
        process = forked.start(
            "vouchsim.companion",
            [str(arg) for arg in args],
            env=clean_environment(),
            cwd=REPO,
            stdout=stdout,
            stderr=stderr,
            safe_path=False,
        )
        try:
            with anyio.fail_after(COMMAND_TIMEOUT):
                returncode = await forked.wait(process)
        finally:
            process.kill()
        return CommandResult(returncode, stdout.read_text("utf-8"), stderr.read_text("utf-8"))


@dataclass
class Companion:
    """An enrolled companion: its state directory, driven through the CLI, and an in-process API client
    (same key, same state) to ask the server what it knows about this device."""

    state_dir: Path
    server_url: str
    api: DeviceApiClient

    @classmethod
    async def enrol(cls, state_dir: Path, http: httpx.AsyncClient, name: str = "e2e phone") -> Companion:
        server_url = str(http.base_url).rstrip("/")
        done = await run_companion("enrol", "--server", server_url, "--state", state_dir, "--name", name)
        assert done.returncode == 0, done.stderr
        return cls(state_dir, server_url, DeviceApiClient(http, Keystore(state_dir)))

    async def scan(self, image: Path, *, approve: bool = True) -> CommandResult:
        return await run_companion("scan", image, *(["--approve"] if approve else []), "--state", self.state_dir)

    async def scan_and_approve(self, image: Path) -> str:
        """Scan the QR, approve, and return the pairing code (the CLI's last stdout line)."""
        done = await self.scan(image)
        assert done.returncode == 0, f"scan failed ({done.returncode}): {done.stderr}\n{done.stdout}"
        assert PAIRING_CODE.match(done.last_line), done.stdout
        return done.last_line


# --- the browser (the person at the authorization page) ------------------------------------------------


@dataclass
class Page:
    url: str
    status: int
    html: str
    images: list[str]
    forms: list[dict[str, Any]]

    @classmethod
    def of(cls, response: httpx.Response) -> Page:
        parser = PageParser()  # the one the pytest plugin's headless person reads pages with
        parser.feed(response.text)
        forms = [{"action": action, "fields": fields} for action, fields in parser.forms]
        return cls(str(response.url), response.status_code, response.text, parser.images, forms)

    def form_with(self, field_name: str) -> dict[str, Any]:
        found = [form for form in self.forms if field_name in form["fields"]]
        assert found, f"no form with a {field_name!r} field on {self.url}:\n{self.html}"
        return found[0]

    @property
    def code_form(self) -> dict[str, Any]:
        return self.form_with("code")

    @property
    def csrf(self) -> str:
        value: str = self.form_with("csrf")["fields"]["csrf"]
        return value

    @property
    def qr_url(self) -> str:
        found = [src for src in self.images if src.endswith("/qr.png")]
        assert found, f"no QR image on {self.url}"
        return urljoin(self.url, found[0])

    @property
    def alerts(self) -> str:
        found = re.findall(r'role="alert"[^>]*>(.*?)</p>', self.html, flags=re.S)
        return " ".join(" ".join(text.split()) for text in found)


class Browser:
    """A person's browser: one cookie jar, no automatic redirects (the test decides what to follow)."""

    def __init__(self, base_url: str, work_dir: Path) -> None:
        self.base_url = base_url
        self.work_dir = work_dir
        self.http = httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)
        self.visited: list[str] = []

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def get(self, url: str) -> httpx.Response:
        response = await self.http.get(urljoin(self.base_url, url))
        self.visited.append(f"GET {urlsplit(str(response.url)).path} {response.status_code}")
        return response

    async def open_authorization(self, url: str) -> Page:
        """GET the authorization URL and follow its redirect to the pairing page."""
        response = await self.get(url)
        assert response.status_code == 303, f"{response.status_code}: {response.text}"
        location = response.headers["location"]
        assert urlsplit(location).path.startswith("/oauth/authorize/pairing/"), location
        return await self.page(location)

    async def page(self, url: str) -> Page:
        return Page.of(await self.get(url))

    async def download_qr(self, page: Page) -> Path:
        response = await self.get(page.qr_url)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        path = self.work_dir / f"qr-{secrets.token_hex(4)}.png"
        path.write_bytes(response.content)
        return path

    async def submit_code(self, page: Page, code: str, *, csrf: str | None = None) -> httpx.Response:
        form = page.code_form
        data = {**form["fields"], "code": code}
        if csrf is not None:
            data["csrf"] = csrf
        response = await self.http.post(urljoin(page.url, form["action"]), data=data)
        self.visited.append(f"POST {urlsplit(str(response.url)).path} {response.status_code}")
        return response

    async def pair(self, url: str, companion: Companion) -> tuple[Page, str]:
        """Open the pairing page, let the companion scan its QR and approve; returns the page and the code."""
        page = await self.open_authorization(url)
        code = await companion.scan_and_approve(await self.download_qr(page))
        return page, code

    async def authorize(self, url: str, companion: Companion) -> str:
        """The whole visit: pairing page, QR to the companion, its code typed in. Returns the 303 Location."""
        page, code = await self.pair(url, companion)
        response = await self.submit_code(page, code)
        assert response.status_code == 303, f"{response.status_code}: {Page.of(response).alerts or response.text}"
        location: str = response.headers["location"]
        return location
