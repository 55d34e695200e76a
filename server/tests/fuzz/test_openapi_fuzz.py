"""Schemathesis against the server's own OpenAPI document, in process (Litestar's test client, no socket).

Every operation of `GET /schema/openapi.json` gets generated requests, valid ones and ones that break the schema,
and every answer must be one the document promises: no 5xx, a documented status code and content type, and a body
that matches the documented schema. Device requests are signed by an enrolled device (the auth hook: `signer_for`
and `send`), so the device API is exercised past its 401; OAuth requests often carry a registered client's id,
redirect URI and tokens, so they reach the checks behind client authentication. Every tenth case carries a NUL byte
and every tenth other one a deeply nested JSON body (`hostile`). `VOUCHSIM_FUZZ_CASES` sets the number of cases.
Each case goes to every backend (fuzz/conftest.py), with the same choices made for it (`SameDraws`).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any, Protocol

import pytest
import requests
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.tests.fuzz.conftest import Parties
from server.tests.fuzz.support import (
    CASES,
    EDGE_GUARD_MERGED,
    MAX_DEPTH,
    SameDraws,
    fuzz_settings,
    nested,
    seeded,
    summary,
)
from server.tests.http.conftest import ISSUER
from server.tests.support import Device, pkce

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# An endless event stream once the signature is good: sent unsigned only (its 401 and 400 answers are fuzzed).
UNSIGNED_ONLY = {"/device/delegations/stream"}
OWN_PARTS = {"path_parameters", "headers", "cookies", "query", "body", "_meta"}  # per backend (own_copy)
TRANSPORT_KEYS = ("method", "url", "headers", "params", "cookies", "data", "json", "files")


class Draws(Protocol):
    def draw(self, strategy: st.SearchStrategy[Any], label: Any = None) -> Any: ...


def known_good(parties: Parties, case: Any, data: Draws) -> None:
    """Replace some generated values by real ones, so a share of the requests gets past the first check."""
    path = case.operation.path
    info = parties.registered
    if not data.draw(st.booleans(), label="known good values"):
        return
    _verifier, challenge = pkce()
    good = {
        "client_id": info["client_id"],
        "redirect_uri": info["redirect_uris"][0],
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "response_type": "code",
        "scope": "identity delegation",
        "token": parties.access_token if data.draw(st.booleans(), label="access token") else parties.refresh_token,
        "refresh_token": parties.refresh_token,
    }
    if path == "/oauth/authorize" and isinstance(case.query, dict):
        case.query.update({k: v for k, v in good.items() if k in case.query or k in {"client_id", "redirect_uri"}})
    elif path == "/oauth/register" and isinstance(case.body, dict):
        registered_uri = data.draw(st.booleans(), label="the registered redirect URI")
        case.body["redirect_uris"] = [good["redirect_uri"] if registered_uri else "https://app.example/cb"]
    elif path.startswith("/oauth/") and isinstance(case.body, dict):
        case.body.update({k: v for k, v in good.items() if k in case.body or k == "client_id"})


def hostile(case: Any, counts: Counter[str]) -> bytes | None:
    """Every tenth case, what no schema describes: a NUL byte in a string; every tenth other one, (returned) a JSON
    body nested deep. Chosen by count, not drawn: drawn, they came up unevenly across operations (and a choice made
    outside Hypothesis must not steer its draws)."""
    seen = counts["seen"]
    counts["seen"] += 1
    containers = [c for c in (case.query, case.body) if isinstance(c, dict)]
    if seen % 10 == 3 and containers:
        container = containers[seen % len(containers)]
        strings = sorted(name for name, value in container.items() if isinstance(value, str))
        if strings:
            name = strings[seen % len(strings)]
            container[name] = container[name] + "\x00"
            counts["with a NUL"] += 1
    elif seen % 10 == 7 and case.media_type == "application/json":
        counts["nested deep"] += 1
        return nested(MAX_DEPTH if seen % 20 == 7 else min(900, MAX_DEPTH), object_=seen % 40 < 20)
    return None


def prepared(case: Any) -> requests.PreparedRequest:
    kwargs = case.as_transport_kwargs(base_url=ISSUER)
    return requests.Request(**{key: kwargs[key] for key in TRANSPORT_KEYS if key in kwargs}).prepare()


def without_nul(value: bytes) -> bytes:
    """EDGE_GUARD_MERGED off, on PostgreSQL: a NUL byte, raw, escaped in JSON or percent-encoded, taken out."""
    return value.replace(b"\x00", b"").replace(b"\\u0000", b"").replace(b"%00", b"")


def signer_for(parties: Parties, case: Any, data: Draws) -> Device | None:
    """The auth hook's key: the enrolled device's, or for an enrolment a fresh key, signing as device `new`, and (when
    drawn) put in the body as the key it enrols, so the proof of possession can hold. None: sent unsigned."""
    path = case.operation.path
    if not path.startswith("/device/") or path in UNSIGNED_ONLY:
        return None
    if path == "/device/me" and case.method.upper() == "DELETE":
        # The device forgetting itself (issue 9c): a device of its own each time, so the suite's stays trusted.
        spare = Device()
        spare.enrol(parties.client)
        return spare
    if path != "/device/enrol":
        return parties.device
    key = Device(device_id="new")
    if isinstance(case.body, dict) and data.draw(st.booleans(), label="enrol the signing key"):
        case.body["public_key"] = key.public_key
    return key


def send(parties: Parties, case: Any, data: Draws, counts: Counter[str]) -> Any:
    signer = signer_for(parties, case, data)
    deep = hostile(case, counts)  # chosen by count: the same for each backend
    request = prepared(case)
    method = request.method or "GET"
    target = request.path_url
    body = request.body or b""
    body = deep or (body.encode() if isinstance(body, str) else body)
    # httpx sets Content-Length for the body actually sent (the prepared one's may be of the body before `hostile`).
    headers = {name: value for name, value in request.headers.items() if name.lower() != "content-length"}
    if not EDGE_GUARD_MERGED and parties.backend == "postgres":
        target, body = without_nul(target.encode()).decode(), without_nul(body)
        headers = {name: value.replace("\x00", "") for name, value in headers.items()}
    if signer is not None:
        # The auth hook: the `Vouch-*` headers over the request exactly as it is sent (docs/device-api.md).
        signature = signer.headers(method, target, body)
        signature.pop("Content-Type")
        headers.update(signature)
    return parties.client.request(method, ISSUER + target, content=body, headers=headers, follow_redirects=False)


def own_copy(case: Any) -> Any:
    """The case with its own request parts and metadata (which tracks changes to them), for one backend's known
    good values; the operation is shared. Slot by slot: `Case.__setattr__` reads the metadata of the case it sets."""
    each = object.__new__(type(case))
    for slot in type(case).__slots__:
        value = getattr(case, slot)
        object.__setattr__(each, slot, copy.deepcopy(value) if slot in OWN_PARTS else value)
    return each


def test_every_answer_is_one_the_openapi_document_promises(
    every_backend: list[Parties], capsys: pytest.CaptureFixture[str]
) -> None:
    raw = every_backend[0].client.get("/schema/openapi.json").json()
    for parties in every_backend[1:]:
        assert parties.client.get("/schema/openapi.json").json() == raw
    schema = schemathesis.openapi.from_dict(raw)
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))
    statuses = {parties.backend: Counter[str]() for parties in every_backend}
    failures: dict[str, str] = {}
    injected = {parties.backend: Counter[str]() for parties in every_backend}  # hostile inputs beyond the schema
    device = {parties.backend: Counter[bool]() for parties in every_backend}  # signed: True when past the signature

    @fuzz_settings()
    @seeded
    @given(case=cases, data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        draws = SameDraws(data)
        for parties in every_backend:
            each = own_copy(case)
            known_good(parties, each, draws)
            response = send(parties, each, draws, injected[parties.backend])
            draws.replay()
            statuses[parties.backend][str(response.status_code)] += 1
            if each.operation.path.startswith("/device/") and each.operation.path not in UNSIGNED_ONLY:
                device[parties.backend][response.status_code != 401] += 1
            try:
                each.validate_response(response, checks=CHECKS)
            except (Failure, FailureGroup) as found:  # every check's failure, collected: one run shows every class
                failed = list(found.exceptions) if isinstance(found, FailureGroup) else [found]
                key = (
                    f"{parties.backend}: {each.operation.label} -> {response.status_code}: "
                    f"{', '.join(type(f).__name__ for f in failed)}"
                )
                detail = "\n".join(str(f) for f in failed)
                failures.setdefault(key, f"{detail}\n{each.as_curl_command()}\n{response.text[:300]}"[:3000])

    run()
    with capsys.disabled():  # the counts show in a serial run (-n 0), not only with -s
        for backend, counts in statuses.items():
            print(
                "\n" + summary(f"schemathesis on {backend}", counts),
                f"(signed device requests past 401: {device[backend][True]} of {device[backend].total()};",
                f"beyond the schema: {injected[backend]['with a NUL']} with a NUL,",
                f"{injected[backend]['nested deep']} nested deep)",
            )
    for backend, counts in statuses.items():
        assert sum(counts.values()) >= min(CASES, 2000) * 0.9, backend
        # The auth hook works: most signed device requests are judged on their content, not refused at the signature.
        assert device[backend][True] > device[backend][False], (backend, device[backend])
    assert not failures, "\n\n".join(f"{key}\n{detail}" for key, detail in failures.items())
