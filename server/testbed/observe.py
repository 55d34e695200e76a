"""What one request says, and what its answer says, as the journal records them and faults match them.

A request is classified once, by its path, into a `kind`; only those kinds are journaled (the OAuth endpoints,
the discovery documents, `/mcp` and the device API; not `/healthz`, `/schema`, static files or `/testbed/`).
Its `summary` holds the meaningful fields: `grant_type`, `scope`, `resource` of a token request, the JSON-RPC
`method`, tool `name` and `id` on `/mcp`, the `error` code of the answer, and a few more per kind.

No secret ever leaves this module: every value under a secret's name (tokens, codes, verifiers, client
secrets, pairing payloads and codes, signatures, CSRF values) is replaced by `"***"` wherever it appears in a
summary, the `code` of a redirect URL too. Header values are never copied, except the device's id.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

Kind = Literal["discovery", "register", "authorize", "pairing", "token", "revoke", "introspect", "mcp", "device"]
KINDS: tuple[Kind, ...] = get_args(Kind)

MASK = "***"
# Names whose values are secrets, wherever they appear (request fields, answer fields, nested arguments).
SECRET_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "code",
        "code_verifier",
        "client_secret",
        "client_assertion",
        "assertion",
        "secret",
        "pairing_secret",
        "qr_payload",
        "signature",
        "decision_signature",
        "csrf",
        "password",
        "pin",
        "authorization",
        "device_token",
        "registration_access_token",
    }
)
MAX_TEXT = 200  # characters of any one string kept in a summary
MAX_ITEMS = 20  # items of any one list or object kept in a summary
MAX_DEPTH = 4
_PAIRING_PATH = re.compile(r"^/oauth/authorize/pairing/([^/]+)")
_REQUEST_PATH = re.compile(r"^/oauth/authorize/requests/([^/]+)")


def kind_of(path: str) -> Kind | None:
    """The journal kind of a request path; None for what is not journaled."""
    if path.startswith("/.well-known/"):
        return "discovery"
    if path == "/mcp" or path == "/mcp/":
        return "mcp"
    if path.startswith("/device/"):
        return "device"
    if not path.startswith("/oauth/"):
        return None
    if path == "/oauth/register":
        return "register"
    if path == "/oauth/token":
        return "token"
    if path == "/oauth/revoke":
        return "revoke"
    if path == "/oauth/introspect":
        return "introspect"
    if path.startswith("/oauth/authorize/pairing/") or (_REQUEST_PATH.match(path) and path.endswith("/pair")):
        return "pairing"
    if path == "/oauth/authorize" or path.startswith("/oauth/authorize/"):
        return "authorize"
    return None


# -- masking ---------------------------------------------------------------------------------------------------
def mask(value: Any, depth: int = 0) -> Any:
    """`value` with every secret-named entry replaced by "***", strings and collections bounded."""
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            return "…"
        return {
            str(key)[:MAX_TEXT]: (MASK if str(key).lower() in SECRET_KEYS else mask(item, depth + 1))
            for key, item in list(value.items())[:MAX_ITEMS]
        }
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return "…"
        return [mask(item, depth + 1) for item in value[:MAX_ITEMS]]
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)[:MAX_TEXT]


def masked_url(url: str) -> str:
    """A redirect target with its secret query parameters (the authorization `code`) masked."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return MASK
    cleaned = [(name, MASK if name.lower() in SECRET_KEYS else value) for name, value in query]
    return urlunsplit(parts._replace(query=urlencode(cleaned, safe="*"), fragment=""))[: MAX_TEXT * 4]


# -- the request -------------------------------------------------------------------------------------------------
@dataclass
class RequestFacts:
    """A request as the journal and the faults see it."""

    kind: Kind
    method: str
    path: str
    client_id: str | None = None
    grant_type: str | None = None
    mcp_method: str | None = None
    tool: str | None = None
    bearer: str | None = None  # the bearer token itself: never journaled, only used to find the client
    pairing_id: str | None = None
    request_id: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def _form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    except ValueError:
        return {}


def _json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested beyond what the parser takes
        return None


def _content_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").partition(";")[0].strip().lower()


def _params(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The parameters of a form or JSON body."""
    kind = _content_type(headers)
    if kind == "application/x-www-form-urlencoded":
        return _form(body)
    if kind == "application/json" or kind.endswith("+json"):
        data = _json(body)
        return data if isinstance(data, dict) else {}
    return {}


def _basic_client_id(authorization: str | None) -> str | None:
    """The client id of HTTP Basic client authentication (RFC 6749 §2.3.1); the secret is never read."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, separator, _secret = decoded.partition(":")
    return unquote(client_id.replace("+", " ")) if separator else None


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _pick(source: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {name: source[name] for name in names if name in source}


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) else None


def request_facts(
    kind: Kind, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> RequestFacts:
    """What the request says. `headers` keys are lower-case."""
    facts = RequestFacts(kind=kind, method=method, path=path)
    summary = facts.summary
    if kind == "authorize":
        params = dict(parse_qsl(query, keep_blank_values=True)) if method == "GET" else {}
        summary.update(
            _pick(
                params,
                "response_type",
                "client_id",
                "redirect_uri",
                "scope",
                "state",
                "code_challenge_method",
                "resource",
            )
        )
        facts.client_id = _text(params.get("client_id"))
        if found := _REQUEST_PATH.match(path):
            facts.request_id = found.group(1)
    elif kind == "pairing":
        if found := _PAIRING_PATH.match(path):
            facts.pairing_id = summary["pairing_id"] = found.group(1)
        elif found := _REQUEST_PATH.match(path):
            facts.request_id = found.group(1)
        if method == "POST":
            summary.update(_pick(_params(headers, body), "code"))
    elif kind in ("token", "revoke", "introspect"):
        params = _params(headers, body)
        facts.grant_type = _text(params.get("grant_type"))
        facts.client_id = _text(params.get("client_id")) or _basic_client_id(headers.get("authorization"))
        summary.update(
            _pick(
                params,
                "grant_type",
                "scope",
                "resource",
                "client_id",
                "redirect_uri",
                "code",
                "code_verifier",
                "refresh_token",
                "client_secret",
                "token",
                "token_type_hint",
            )
        )
        if facts.client_id is not None:
            summary["client_id"] = facts.client_id
        if _basic_client_id(headers.get("authorization")) is not None:
            summary["client_authentication"] = "client_secret_basic"
    elif kind == "register":
        params = _params(headers, body)
        summary.update(
            _pick(
                params,
                "client_name",
                "redirect_uris",
                "grant_types",
                "response_types",
                "token_endpoint_auth_method",
                "scope",
            )
        )
    elif kind == "mcp":
        facts.bearer = _bearer(headers.get("authorization"))
        message = _json(body) if method == "POST" else None
        if isinstance(message, dict):
            facts.mcp_method = _text(message.get("method"))
            summary.update(_pick(message, "method", "id"))
            rpc_params = message.get("params")
            if isinstance(rpc_params, dict) and facts.mcp_method == "tools/call":
                facts.tool = _text(rpc_params.get("name"))
                summary.update(_pick(rpc_params, "name", "arguments"))
            elif isinstance(rpc_params, dict) and facts.mcp_method == "initialize":
                summary.update(_pick(rpc_params, "protocolVersion"))
        elif isinstance(message, list):
            summary["batch"] = len(message)
        if version := headers.get("mcp-protocol-version"):
            summary["protocol_version"] = version[:MAX_TEXT]
    elif kind == "device":
        if device_id := headers.get("vouch-device-id"):
            summary["device_id"] = device_id[:MAX_TEXT]
        params = _params(headers, body)
        summary.update(_pick(params, "name", "decision", "qr_payload", "signature"))
    facts.summary = mask(summary)
    return facts


# -- the answer --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnswerFacts:
    """What the answer adds: fields for the summary, and the client or names it reveals."""

    summary: dict[str, Any]
    client_id: str | None = None
    access_token: str | None = None  # a token just issued (to remember whose it is); never journaled
    pairing_id: str | None = None  # where an authorization request's page led (to name later pages' client)
    request_id: str | None = None


def _error_of(body: Any, headers: Mapping[str, str]) -> Any:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, str):
            return error
        if isinstance(error, dict):  # JSON-RPC
            data = error.get("data")
            if isinstance(data, dict) and isinstance(data.get("error"), str):
                return data["error"]
            return error.get("code")
    challenge = headers.get("www-authenticate", "")
    if found := re.search(r'error="([^"]*)"', challenge):
        return found.group(1)
    location = headers.get("location")
    if location:
        try:
            query = dict(parse_qsl(urlsplit(location).query))
        except ValueError:
            return None
        return query.get("error")
    return None


def _last_event_data(body: bytes) -> Any:
    """The JSON of the last `data:` line of an event stream (the answer of a streamed call)."""
    lines = [line for line in body.decode("utf-8", errors="replace").splitlines() if line.startswith("data:")]
    return _json(lines[-1][5:].strip().encode()) if lines else None


def answer_facts(facts: RequestFacts, status: int, headers: Mapping[str, str], body: bytes) -> AnswerFacts:
    """What the answer says. `headers` keys are lower-case; `body` may be cut short (the journal keeps little)."""
    kind = _content_type(headers)
    data = _last_event_data(body) if kind == "text/event-stream" else _json(body) if "json" in kind else None
    summary: dict[str, Any] = {}
    client_id: str | None = None
    access_token: str | None = None
    pairing_id: str | None = None
    request_id: str | None = None
    error = _error_of(data, headers)
    if error is not None:
        summary["error"] = error
    location = headers.get("location")
    if location and facts.kind in ("authorize", "pairing"):
        summary["location"] = masked_url(location)
        path = urlsplit(location).path
        if found := _PAIRING_PATH.match(path):
            pairing_id = found.group(1)
        if found := _REQUEST_PATH.match(path):
            request_id = found.group(1)
    if isinstance(data, dict):
        if facts.kind == "register" and status < 300:
            client_id = _text(data.get("client_id"))
            summary.update(_pick(data, "client_id", "client_secret", "token_endpoint_auth_method"))
        elif facts.kind == "token" and status < 300:
            issued = data.get("access_token")
            access_token = issued if isinstance(issued, str) else None
            summary.update(_pick(data, "expires_in", "token_type"))
            if "scope" in data:
                summary["granted_scope"] = data["scope"]
        elif facts.kind == "introspect" and status < 300:
            summary.update(_pick(data, "active"))
        elif facts.kind == "device" and status < 300:
            client_id = _text(data.get("client_id"))
            summary.update(_pick(data, "pairing_id", "delegation_id", "status"))
    return AnswerFacts(mask(summary), client_id, access_token, pairing_id, request_id)
