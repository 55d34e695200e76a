"""Client ID Metadata Documents against a live `vouchsim serve`, with clients no one here wrote.

The test serves each client's metadata document itself, over real TLS on loopback, with its own CA (trustme), and
starts the server with `VOUCHSIM_CIMD_CA_FILE` (that CA) and `VOUCHSIM_CIMD_ALLOW_HOSTS` (that host and port), as a
team testing its own client on one machine would. Then:

- the MCP Python SDK 2.3.0 with `client_metadata_url`, and the TypeScript SDK v2 with `clientMetadataUrl`, go
  through the whole OAuth and pairing flow with the URL as their client_id, and the server's testbed journal shows
  that nobody called `/oauth/register`; the pairing page and the device show the verified host;
- each kind of bad document stops the authorization on the page's error, never with a redirect;
- `VOUCHSIM_REGISTRATION=dcr`: the Python SDK, offered no CIMD, falls back to dynamic registration and the document
  is never fetched; `=cimd`: registration answers 404 and the metadata has no `registration_endpoint`;
- the conformance suite's `authorization` command (metadata, then the authorization code grant with the CIMD
  client's URL as `--client-id`) passes with no warning, the CIMD one included.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata

from e2e.harness import (
    HTTP_TIMEOUT,
    REPO,
    Browser,
    Companion,
    LiveServer,
    Page,
    ServerFactory,
    clean_environment,
    free_port,
    query_of,
)
from e2e.node_clients import (
    NODE_PROJECT,
    approving,
    installed_package,
    json_lines_process,
    newer_node,
    node_executable,
    sandbox_environment,
)
from e2e.test_delegation_flow import PAYMENTS, structured
from e2e.test_oauth_sdk_flow import MemoryTokenStorage
from server.tests.cimd_support import DocumentServer, document
from vouchsim.companion.core.testbed import TestbedClient

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

TOKEN = "e2e-testbed-token-cimd-0123456789"
STEP = 30.0
TEST_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocumentServer]:
    """The clients' own https server: it serves whatever document (or failure) a test puts at a path."""
    with DocumentServer(tmp_path_factory.mktemp("cimd-docs")) as server:
        yield server


@pytest.fixture(scope="module")
def dead_port() -> int:
    """A loopback port nothing listens on, allowed like the document server's (an unreachable document)."""
    return free_port()


def cimd_env(docs: DocumentServer, dead_port: int, **extra: str) -> dict[str, str]:
    return {
        "VOUCHSIM_TESTBED": "1",
        "VOUCHSIM_TESTBED_TOKEN": TOKEN,
        "VOUCHSIM_CIMD_CA_FILE": str(docs.ca_file),
        "VOUCHSIM_CIMD_ALLOW_HOSTS": f"{docs.host_key},127.0.0.1:{dead_port}",
        **extra,
    }


@pytest.fixture(scope="module")
def live_server(servers: ServerFactory, docs: DocumentServer, dead_port: int) -> LiveServer:
    """The default registration mode (cimd,dcr), fetching documents from the test's server."""
    return servers.start(cimd_env(docs, dead_port))


@pytest.fixture
async def testbed(live_server: LiveServer) -> AsyncIterator[TestbedClient]:
    async with TestbedClient.connect(live_server.base_url, TOKEN) as client:
        yield client


def publish(docs: DocumentServer, redirect_uri: str, **fields: Any) -> str:
    """Serve a valid document for a new client at a new path; its URL, the client_id."""
    path = f"/clients/{secrets.token_hex(6)}.json"
    url = docs.url(path)
    docs.serve(path, document(url, client_name="Vouchsim e2e CIMD client", redirect_uris=[redirect_uri], **fields))
    return url


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


class Person:
    """The browser and the trusted device behind an SDK's redirect and callback handlers; keeps each page seen."""

    def __init__(self, browser: Browser, companion: Companion) -> None:
        self.browser = browser
        self.companion = companion
        self.pages: list[Page] = []
        self.scans: list[str] = []
        self.locations: list[str] = []

    async def authorize(self, url: str) -> str:
        page = await self.browser.open_authorization(url)
        self.pages.append(page)
        done = await self.companion.scan(await self.browser.download_qr(page))
        assert done.returncode == 0, done.stderr
        self.scans.append(done.stdout)
        response = await self.browser.submit_code(page, done.last_line)
        assert response.status_code == 303, response.text
        location: str = response.headers["location"]
        self.locations.append(location)
        return location

    async def redirect_handler(self, authorization_url: str) -> None:
        await self.authorize(authorization_url)

    async def callback_handler(self) -> Any:
        from mcp.client.auth import AuthorizationCodeResult

        params = query_of(self.locations[-1])
        assert "error" not in params, params
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))


@asynccontextmanager
async def python_sdk(server: LiveServer, person: Person, redirect_uri: str, metadata_url: str) -> AsyncIterator[Client]:
    provider = OAuthClientProvider(
        server_url=server.mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="Vouchsim e2e (MCP Python SDK, CIMD)",
            redirect_uris=[redirect_uri],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=MemoryTokenStorage(),
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
        client_metadata_url=metadata_url,
    )
    async with (
        httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(60.0)) as http,
        Client(streamable_http_client(server.mcp_url, http_client=http)) as client,
    ):
        yield client


def assert_shows_the_verified_host(person: Person, host: str) -> None:
    [page] = person.pages
    assert f'<dd class="verified-host">{host}' in page.html, page.html
    assert "localhost-warning" in page.html  # its one redirect URI is on loopback
    assert f"verified: {host}" in person.scans[0], person.scans[0]  # what the device showed before approving


@pytest.mark.requirement("CIMD-PYTHON-SDK", "CIMD-NO-REGISTRATION", "CIMD-IDENTITY-SHOWN", "MCP-TOOLS-CALL")
async def test_the_python_sdk_signs_in_with_its_metadata_document_and_never_registers(
    live_server: LiveServer, browser: Browser, companion: Companion, docs: DocumentServer, testbed: TestbedClient
) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    url = publish(docs, redirect_uri)
    person = Person(browser, companion)
    with anyio.fail_after(TEST_TIMEOUT):
        async with python_sdk(live_server, person, redirect_uri, url) as client:
            identity = structured(await client.call_tool("identity_get", {}))
            async with approving(companion):
                approved = structured(await client.call_tool("delegation_request", {**PAYMENTS, "timeoutSeconds": 20}))
    assert identity["clientId"] == url  # the URL is the client's id everywhere
    assert approved["status"] == "approved"
    assert query_of(person.locations[0])["code"]
    assert_shows_the_verified_host(person, "127.0.0.1")
    assert docs.fetches(path_of(url)) == 1  # one fetch for authorize and token exchange: the cache
    assert await testbed.journal(kind="register") == []
    kinds = {entry.kind for entry in await testbed.journal(client_id=url)}
    assert {"authorize", "token", "mcp"} <= kinds, kinds
    [mine] = [c for c in await companion.api.connections() if c.client_id == url]
    assert mine.verified_host == "127.0.0.1"


@pytest.mark.requirement("CIMD-TS-SDK", "CIMD-NO-REGISTRATION", "TS-SDK-V2-2026")
async def test_the_typescript_sdk_signs_in_with_its_metadata_document_and_never_registers(
    live_server: LiveServer,
    browser: Browser,
    companion: Companion,
    docs: DocumentServer,
    testbed: TestbedClient,
    tmp_path: Path,
) -> None:
    node = node_executable()
    installed_package("@modelcontextprotocol/client")
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    url = publish(docs, redirect_uri)
    person = Person(browser, companion)
    command: list[str | Path] = [
        *(node, NODE_PROJECT / "ts_sdk_v2_client.mjs", "--server", live_server.mcp_url),
        *("--redirect-url", redirect_uri, "--client-metadata-url", url),
        *("--delegation", json.dumps({**PAYMENTS, "timeoutSeconds": 20}), "--timeout", str(TEST_TIMEOUT)),
    ]
    # The Node process trusts the test's CA as the server does (it would need to, to read the document itself).
    env = sandbox_environment(tmp_path / "home", node, NODE_EXTRA_CA_CERTS=str(docs.ca_file))
    with anyio.fail_after(TEST_TIMEOUT):
        async with json_lines_process("ts_sdk_v2_cimd", command, env, tmp_path) as agent:
            authorize = await agent.expect("authorize", STEP)
            assert query_of(authorize["url"])["client_id"] == url
            await agent.send({"type": "redirect", "location": await person.authorize(authorize["url"])})
            [identity] = [await agent.expect("identity", STEP)]
            async with approving(companion):
                delegation = await agent.expect("delegation", STEP)
            await agent.expect("done", STEP)
            assert await agent.exit_code(STEP) == 0, agent.report()
    assert identity["result"]["structuredContent"]["clientId"] == url
    assert delegation["result"]["structuredContent"]["status"] == "approved"
    assert not [m for m in agent.of_type("http") if m["path"] == "/oauth/register"], agent.report()
    assert await testbed.journal(kind="register") == []
    assert_shows_the_verified_host(person, "127.0.0.1")


def _page_error(response: httpx.Response) -> str:
    """The page's error: a 400 page, no redirect anywhere."""
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    page = Page.of(response)
    assert "This sign-in link is not valid" in page.html
    text = re.sub(r"<[^>]+>", " ", page.html)
    return " ".join(text.split())


BAD_DOCUMENTS: dict[str, tuple[dict[str, Any], str]] = {
    "a redirect": ({"status": 302, "headers": {"Location": "https://elsewhere.example/c.json"}}, "redirects are not"),
    "a 404": ({"status": 404, "body": b"nope", "content_type": "text/plain"}, "answered 404"),
    "not JSON": ({"body": b"<html>hello</html>"}, "is not valid JSON"),
    "too large": ({"body": b'{"client_name": "' + b"x" * 6000 + b'"}'}, "larger than 5120 bytes"),
    "a client_id mismatch": ({"document": {"client_id": "https://other.example/c.json"}}, "must be exactly the URL"),
    "a secret": ({"document": {"client_secret": "s3cr3t-s3cr3t-s3cr3t"}}, "contains client_secret"),
    "client_secret_basic": ({"document": {"token_endpoint_auth_method": "client_secret_basic"}}, "shared-secret"),
}


@pytest.mark.requirement("CIMD-BAD-DOCUMENT-PAGE")
@pytest.mark.parametrize("case", [*BAD_DOCUMENTS, "unreachable", "a private address without the allow setting"])
async def test_a_bad_document_gets_the_error_page_and_no_redirect(
    live_server: LiveServer,
    http: httpx.AsyncClient,
    docs: DocumentServer,
    dead_port: int,
    testbed: TestbedClient,
    case: str,
) -> None:
    # Each case from a clean testbed: a reset also forgets how often each host was fetched (at most 10 fetches per
    # host and port a minute, and every case here fetches twice from the same host).
    await testbed.reset()
    redirect_uri = "http://127.0.0.1:3000/callback"
    path = f"/bad/{secrets.token_hex(6)}.json"
    if case == "unreachable":
        url, says = f"https://127.0.0.1:{dead_port}{path}", "could not be fetched"
    elif case == "a private address without the allow setting":
        # A name on the default port that resolves to loopback: the server looks it up itself and refuses the
        # address (only 127.0.0.1 with the document server's port, and that dead port, are allowed, by name).
        url, says = f"https://localhost{path}", "resolves to a loopback"
    else:
        answer, says = dict(BAD_DOCUMENTS[case][0]), BAD_DOCUMENTS[case][1]
        url = docs.url(path)
        fields = answer.pop("document", None) if "document" in answer else None
        if fields is not None:
            docs.serve(path, document(url, redirect_uris=[redirect_uri], **fields))
            answer = {}
        else:
            docs.serve(path, answer.pop("body", b""), **answer)
    params = {
        "response_type": "code",
        "client_id": url,
        "redirect_uri": redirect_uri,
        "state": "s",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }
    response = await http.get(f"{live_server.base_url}/oauth/authorize", params=params)
    assert says in _page_error(response)
    token = await http.post(
        f"{live_server.base_url}/oauth/token",
        data={"grant_type": "authorization_code", "code": "c", "client_id": url, "code_verifier": "v" * 43},
    )
    assert token.status_code in (400, 401) and token.json()["error"] == "invalid_client", token.text
    if case == "unreachable" or case == "a private address without the allow setting":
        assert docs.fetches(path) == 0


@pytest.mark.requirement("CIMD-REGISTRATION-DCR-ONLY", "MCP-SDK-OAUTH-CLIENT")
async def test_with_dcr_alone_the_python_sdk_falls_back_to_registration(
    servers: ServerFactory, docs: DocumentServer, dead_port: int, tmp_path: Path
) -> None:
    server = await anyio.to_thread.run_sync(
        lambda: servers.start(cimd_env(docs, dead_port, VOUCHSIM_REGISTRATION="dcr"))
    )
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    url = publish(docs, redirect_uri)
    async with (
        httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT) as device_http,
        Browser(server.base_url, tmp_path) as browser,
        TestbedClient.connect(server.base_url, TOKEN) as testbed,
    ):
        companion = await Companion.enrol(tmp_path / "companion", device_http)
        metadata = (await device_http.get("/.well-known/oauth-authorization-server")).json()
        assert metadata["client_id_metadata_document_supported"] is False
        person = Person(browser, companion)
        with anyio.fail_after(TEST_TIMEOUT):
            async with python_sdk(server, person, redirect_uri, url) as client:
                identity = structured(await client.call_tool("identity_get", {}))
        assert identity["clientId"].startswith("vsc_")  # registered, not the URL
        [registered] = await testbed.journal(kind="register")
        assert registered.status == 201
        assert "verified-host" not in person.pages[0].html  # a registered client has no verified host
    assert docs.fetches(path_of(url)) == 0


@pytest.mark.requirement("CIMD-REGISTRATION-CIMD-ONLY")
async def test_with_cimd_alone_registration_is_404_and_not_advertised(
    servers: ServerFactory, docs: DocumentServer, dead_port: int
) -> None:
    server = await anyio.to_thread.run_sync(
        lambda: servers.start(cimd_env(docs, dead_port, VOUCHSIM_REGISTRATION="cimd"))
    )
    async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT) as http:
        metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert metadata["client_id_metadata_document_supported"] is True
        assert "registration_endpoint" not in metadata
        response = await http.post(
            "/oauth/register",
            json={"redirect_uris": ["http://127.0.0.1:3000/cb"], "token_endpoint_auth_method": "none"},
        )
        assert response.status_code == 404 and response.json()["error"] == "not_found"


@pytest.mark.requirement("CIMD-CONFORMANCE-AUTHORIZATION")
async def test_the_conformance_authorization_command_passes_with_no_warning(
    live_server: LiveServer, browser: Browser, companion: Companion, docs: DocumentServer, tmp_path: Path
) -> None:
    """`conformance authorization` (0.2.0-alpha.12): the metadata scenario (whose CIMD check only warns when the
    flag is not true) and the authorization code grant, with the CIMD client's URL as `--client-id`: the suite
    prints the authorization URL, the person goes through the page, the browser lands on the suite's callback."""
    port = free_port()
    url = publish(docs, f"http://127.0.0.1:{port}/callback")
    script = installed_package("@modelcontextprotocol/conformance") / "dist" / "index.js"
    output = tmp_path / "conformance"
    command = [
        *(str(newer_node()), str(script), "authorization", "--url", live_server.base_url),
        *("--client-id", url, "--port", str(port), "-o", str(output)),
    ]
    lines: list[str] = []
    with anyio.fail_after(TEST_TIMEOUT):
        async with await anyio.open_process(command, cwd=REPO, env=clean_environment()) as process:
            assert process.stdout is not None
            buffer = b""
            authorization_url = None
            async for chunk in process.stdout:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                lines += [line.decode() for line in complete]
                authorization_url = next((line for line in lines if "/oauth/authorize?" in line), None)
                if authorization_url:
                    break
            assert authorization_url, "\n".join(lines)
            location = await Person(browser, companion).authorize(authorization_url.strip())
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as callback:
                assert (await callback.get(location)).status_code == 200  # the suite's callback server
            rest = b"".join([chunk async for chunk in process.stdout])
            lines += (buffer + rest).decode().splitlines()
            code = await process.wait()
    checks = [check for path in sorted(output.rglob("checks.json")) for check in json.loads(path.read_text())]
    report = "\n".join(f"{c['status']:8} {c['id']} {c.get('errorMessage') or ''}" for c in checks)
    assert {c["id"] for c in checks} >= {"authorization-server-metadata", "authorization-server-metadata-cimd"}, report
    assert any(c["status"] == "SUCCESS" and "code" in c["id"] for c in checks), report + "\n" + "\n".join(lines)
    assert all(c["status"] == "SUCCESS" for c in checks), report
    assert code == 0, "\n".join(lines)
