"""Two MCP clients no one here wrote, run by Node against a live server, each all the way through: discovery,
dynamic registration, authorization through the pairing page (the companion pairs headlessly), the token
exchange, tools/list, identity_get, and a delegation_request approved on the companion.

- The official TypeScript SDK (`@modelcontextprotocol/sdk`): e2e/node/ts_sdk_client.mjs is an agent built on
  its `Client`, `StreamableHTTPClientTransport` and an `OAuthClientProvider`. It tells the test what it did as
  JSON lines; the test is the person (the browser and the phone) and answers with the page's redirect.
- `mcp-remote`, the stdio↔remote proxy desktop hosts use: it prints the authorization URL, "opens" it in a
  browser that only records, and waits on its own loopback callback, which the test's browser visits last, as a
  person's would. The official MCP Python SDK then speaks MCP to it over stdio.

Both run from e2e/node/node_modules at the versions package.json pins (`./.ci/setup.sh --e2e` installs them);
without them the tests fail. Each client is checked on what it saw and on what the server saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from e2e.harness import HTTP_TIMEOUT, Browser, Companion, LiveServer, free_port, mcp_initialize, query_of
from e2e.node_clients import (
    NODE_PROJECT,
    FakeBrowser,
    approving,
    in_order,
    installed_package,
    json_lines_process,
    node_executable,
    package_binary,
    processes_with,
    requests_seen,
    sandbox_environment,
)
from e2e.test_delegation_flow import PAYMENTS, structured, verify_delegation_token

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

TOOLS = ["identity_get", "delegation_request", "delegation_status", "delegation_revoke"]
PROTOCOL_VERSIONS = {"2025-11-25", "2025-06-18", "2025-03-26"}  # what the server speaks (docs/mcp.md)
DELEGATION = {**PAYMENTS, "timeoutSeconds": 15}  # the companion answers in a second or two
STEP_TIMEOUT = 20.0  # seconds for one step of a client (it never takes more than a few)
TEST_TIMEOUT = 60.0  # the whole test, whatever happens


def left_running(server: LiveServer, companion: Companion) -> list[str]:
    """What this test started and is still running: anything naming the server's URL (the Node clients, and
    whatever mcp-remote spawned to open a browser) or the companion's state (its CLI)."""
    return processes_with(server.base_url) + processes_with(str(companion.state_dir))


def authorization_checks(url: str, location: str, server: LiveServer, redirect_uri: str) -> dict[str, str]:
    """What any of these clients must have asked for, and what the page must have answered; returns the
    authorization request's parameters."""
    asked = query_of(url)
    assert url.startswith(f"{server.base_url}/oauth/authorize?"), url
    assert asked["response_type"] == "code"
    assert asked["code_challenge_method"] == "S256" and asked["code_challenge"]
    assert asked["resource"] == server.mcp_url
    assert asked["redirect_uri"] == redirect_uri
    assert {"identity", "delegation"} <= set(asked["scope"].split())
    answered = query_of(location)
    assert location.startswith(redirect_uri + "?"), location
    assert answered["code"] and answered["state"] == asked["state"]
    assert answered["iss"] == server.base_url
    return asked


def identity_checks(identity: dict[str, Any], server: LiveServer, client_id: str, client_name: str) -> None:
    assert identity["issuer"] == server.base_url
    assert identity["clientId"] == client_id
    assert identity["clientName"] == client_name
    assert identity["subject"] and not identity["subject"].startswith("usr_")  # pairwise, not the user id
    assert {"identity", "delegation"} <= set(identity["scopes"])


async def delegation_checks(
    delegation: dict[str, Any], decisions: list[str], server: LiveServer, client_id: str
) -> None:
    """Approved on the companion, and the token is what the audience expects: verified against the JWKS."""
    assert delegation["status"] == "approved", delegation
    assert delegation["bindingMessage"]
    assert any(line.startswith(f"approved {delegation['delegationId']} aud_test_payments") for line in decisions), (
        decisions
    )
    claims = await verify_delegation_token(server, delegation["token"], "aud_test_payments")
    assert claims["scope"].split() == PAYMENTS["scopes"]
    assert claims["act"]["sub"] == client_id


@pytest.mark.requirement(
    "TS-SDK-OAUTH-CLIENT",
    "OAUTH-DCR-PUBLIC",
    "OAUTH-LOOPBACK-REDIRECT",
    "MCP-TOOLS-LIST",
    "MCP-TOOLS-CALL",
    "DELEGATION-APPROVE",
)
async def test_typescript_sdk_client_authorizes_through_pairing_and_gets_a_delegation(
    live_server: LiveServer, browser: Browser, companion: Companion, tmp_path: Path
) -> None:
    node = node_executable()
    installed_package("@modelcontextprotocol/sdk")
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"  # a loopback port of its own (nothing listens)
    command: list[str | Path] = [
        *(node, NODE_PROJECT / "ts_sdk_client.mjs", "--server", live_server.mcp_url),
        *("--redirect-url", redirect_uri, "--delegation", json.dumps(DELEGATION), "--timeout", str(TEST_TIMEOUT)),
    ]
    since = live_server.log_size()

    with anyio.fail_after(TEST_TIMEOUT):
        async with json_lines_process(
            "ts_sdk_client", command, sandbox_environment(tmp_path / "home", node), tmp_path
        ) as agent:
            authorize = await agent.expect("authorize", STEP_TIMEOUT)
            location = await browser.authorize(authorize["url"], companion)  # the person: page, QR, phone, code
            await agent.send({"type": "redirect", "location": location})
            identity = await agent.expect("identity", STEP_TIMEOUT)
            async with approving(companion) as decisions:  # delegation_request is on its way
                delegation = await agent.expect("delegation", STEP_TIMEOUT)
            await agent.expect("done", STEP_TIMEOUT)
            assert await agent.exit_code(STEP_TIMEOUT) == 0, agent.report()
    assert not left_running(live_server, companion)

    # The SDK found its way alone: 401 → RFC 9728 → RFC 8414 → RFC 7591, then (after the page) the code for
    # tokens and the MCP session. It rediscovers in finishAuth (this provider caches no discovery state).
    http = [(m["method"], m["path"], m["status"]) for m in agent.of_type("http")]
    assert http[:8] == [
        ("POST", "/mcp", 401),
        ("GET", "/.well-known/oauth-protected-resource/mcp", 200),
        ("GET", "/.well-known/oauth-authorization-server", 200),
        ("POST", "/oauth/register", 201),
        ("GET", "/.well-known/oauth-protected-resource/mcp", 200),
        ("GET", "/.well-known/oauth-authorization-server", 200),
        ("POST", "/oauth/token", 200),
        ("POST", "/mcp", 200),  # initialize, with the bearer token
    ], agent.report()
    assert not [request for request in http[8:] if request[2] in (401, 403)], http  # the token held throughout
    assert http[-1] == ("DELETE", "/mcp", 204)  # terminateSession()
    assert [m["type"] for m in agent.messages if m["type"] != "http"] == [
        *("registered", "authorize", "tokens", "connected", "tools", "identity", "delegation", "done")
    ]

    [registered] = agent.of_type("registered")
    assert registered["token_endpoint_auth_method"] == "none" and not registered["has_secret"]
    asked = authorization_checks(authorize["url"], location, live_server, redirect_uri)
    assert asked["client_id"] == registered["client_id"]
    [tokens] = agent.of_type("tokens")
    assert tokens["token_type"].lower() == "bearer" and tokens["expires_in"] > 0 and tokens["has_refresh_token"]
    assert set(tokens["scope"].split()) == set(asked["scope"].split())
    [connected] = agent.of_type("connected")
    assert connected["protocol_version"] in PROTOCOL_VERSIONS
    assert connected["server"]["name"] == "vouchsim"

    [tools] = agent.of_type("tools")
    assert tools["names"] == TOOLS
    # callTool already checked structuredContent against each tool's outputSchema.
    assert not identity["result"].get("isError"), identity
    identity_checks(
        identity["result"]["structuredContent"], live_server, registered["client_id"], "Vouchsim e2e (TypeScript SDK)"
    )
    assert not delegation["result"].get("isError"), delegation
    await delegation_checks(delegation["result"]["structuredContent"], decisions, live_server, registered["client_id"])

    # The server's side: the grant the phone approved, for this client, and the requests in that order.
    assert [c.client_id for c in await companion.api.connections()] == [registered["client_id"]]
    assert in_order(
        requests_seen(live_server, since),
        [
            ("POST", "/oauth/register", 201),
            ("GET", "/oauth/authorize", 303),
            ("POST", "/oauth/token", 200),
            ("POST", "/mcp", 200),
            ("DELETE", "/mcp", 204),
        ],
    ), live_server.log(since)


async def authorization_url_in(log: Path, within: float) -> str:
    """The URL mcp-remote prints on stderr, on the line after "Please authorize this client by visiting:"."""
    text = ""
    with anyio.move_on_after(within):
        while True:
            lines = (text := await anyio.Path(log).read_text(errors="replace")).splitlines()
            for at, line in enumerate(lines[:-1]):
                if line.endswith("Please authorize this client by visiting:"):
                    return lines[at + 1].strip()
            await anyio.sleep(0.05)  # polling a file: bounded by the timeout above
    pytest.fail(f"mcp-remote printed no authorization URL within {within} s:\n{text}", pytrace=False)


@pytest.mark.requirement(
    "MCP-REMOTE-OAUTH-CLIENT",
    "OAUTH-DCR-PUBLIC",
    "OAUTH-LOOPBACK-REDIRECT",
    "MCP-TOOLS-LIST",
    "MCP-TOOLS-CALL",
    "DELEGATION-APPROVE",
)
async def test_mcp_remote_authorizes_on_its_loopback_callback_and_proxies_stdio(
    live_server: LiveServer, browser: Browser, companion: Companion, tmp_path: Path
) -> None:
    node = node_executable()
    proxy = package_binary("mcp-remote", "mcp-remote")
    callback_port = free_port()
    redirect_uri = f"http://127.0.0.1:{callback_port}/oauth/callback"  # mcp-remote's default callback path
    config_dir, home = tmp_path / "mcp-auth", tmp_path / "home"  # its tokens stay in this test's directory
    opener = FakeBrowser.install(tmp_path / "browser")
    server = StdioServerParameters(
        command=node,
        # The port is fixed so the redirect URI is known; --host: RFC 8252 prefers 127.0.0.1 to `localhost`.
        args=[str(proxy), live_server.mcp_url, str(callback_port), "--host", "127.0.0.1"],
        env=sandbox_environment(
            home,
            node,
            path_first=[opener.bin_dir],
            BROWSER=str(opener.command),
            MCP_REMOTE_CONFIG_DIR=str(config_dir),
        ),
        cwd=tmp_path,
    )
    stderr_path = tmp_path / "mcp-remote.stderr"
    since = live_server.log_size()

    with anyio.fail_after(TEST_TIMEOUT), stderr_path.open("w") as stderr:
        try:
            # stdio_client kills the process group on the way out, whatever happened in the block.
            async with stdio_client(server, errlog=stderr) as (read, write):
                url = await authorization_url_in(stderr_path, STEP_TIMEOUT)
                location = await browser.authorize(url, companion)
                callback = await browser.get(location)  # the browser's last step: to mcp-remote's loopback port
                assert callback.status_code == 200, callback.text
                assert "Authorization successful" in callback.text
                # mcp-remote reads stdin only once it holds a token: the first request waits for that.
                async with ClientSession(read, write, read_timeout_seconds=STEP_TIMEOUT) as session:
                    initialized = await session.initialize()
                    tools = [tool.name for tool in (await session.list_tools()).tools]
                    identity = structured(await session.call_tool("identity_get", {}))
                    async with approving(companion) as decisions:
                        delegation = structured(await session.call_tool("delegation_request", DELEGATION))
        except BaseException as exc:  # the proxy's own account of what went wrong belongs in the report
            exc.add_note(f"mcp-remote's stderr:\n{stderr_path.read_text(errors='replace')}")
            raise
    assert not left_running(live_server, companion)
    log = stderr_path.read_text()

    asked = authorization_checks(url, location, live_server, redirect_uri)
    # It tried to open the URL in a browser: the recorder, through $BROWSER, and nothing else.
    opened = opener.opened()
    assert [name for name, _ in opened] == ["fake-browser"], opened
    assert query_of(opened[0][1]) == asked

    assert initialized.protocol_version in PROTOCOL_VERSIONS
    assert initialized.server_info.name == "vouchsim"
    assert tools == TOOLS
    identity_checks(identity, live_server, asked["client_id"], "MCP CLI Proxy")  # the name mcp-remote registers
    await delegation_checks(delegation, decisions, live_server, asked["client_id"])

    # What mcp-remote kept, where it was told to (and nothing in HOME): a public client and its tokens.
    [client_file] = config_dir.glob("**/*_client_info.json")
    [tokens_file] = config_dir.glob("**/*_tokens.json")
    assert not (home / ".mcp-auth").exists()
    client_info, stored = json.loads(client_file.read_text()), json.loads(tokens_file.read_text())
    assert client_info["client_id"] == asked["client_id"]
    assert client_info["token_endpoint_auth_method"] == "none" and "client_secret" not in client_info
    assert client_info["redirect_uris"] == [redirect_uri]
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:  # the token it proxied with is a real one
        assert (await mcp_initialize(http, live_server.mcp_url, stored["access_token"])).status_code == 200

    # The server's side: registration, the page, the code exchange, then MCP with the token.
    assert [c.client_id for c in await companion.api.connections()] == [asked["client_id"]]
    assert in_order(
        requests_seen(live_server, since),
        [
            ("POST", "/mcp", 401),
            ("GET", "/.well-known/oauth-protected-resource/mcp", 200),
            ("GET", "/.well-known/oauth-authorization-server", 200),
            ("POST", "/oauth/register", 201),
            ("GET", "/oauth/authorize", 303),
            ("POST", "/oauth/token", 200),
            ("POST", "/mcp", 200),
        ],
    ), live_server.log(since)
    assert "Authorization error" not in log and "Connection error" not in log, log
