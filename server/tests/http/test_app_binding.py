"""`routes()` and `bind()`: the app's routes built once and bound to one deployment after another (as the HTTP tests'
`client` fixture does), each use with its own settings, clock, state, edge and database, nothing of the last one's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.http.conftest import ISSUER, TEST_HOSTS
from server.tests.support import authorize_params, pkce, register
from vouchsim.server.app import Deployment, bind, routes
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.settings import Settings


def test_an_app_bound_again_serves_only_its_new_deployment(tmp_path: Path) -> None:
    app = routes()
    first = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'first.db'}", allowed_hosts=TEST_HOSTS)
    with TestClient(bind(app, Deployment.of(first, clock=FrozenClock())), base_url=ISSUER) as client:
        registered = register(client)
        assert authorize(client, registered).status_code == 303  # on to the pairing page
        assert client.get("/.well-known/oauth-authorization-server").json()["issuer"] == ISSUER
        first_state = app.state

    # Another database, another host list, registration closed, and the rate limits of a fresh edge.
    second = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'second.db'}",
        allowed_hosts="vouch.test",
        registration="none",
    )
    with TestClient(bind(app, Deployment.of(second, clock=FrozenClock())), base_url=ISSUER) as client:
        assert app.state is not first_state and app.state.deployment.settings is second
        with pytest.raises(RuntimeError):
            bind(app, Deployment.of(first, clock=FrozenClock()))  # not while this deployment runs
        assert client.post("/oauth/register", json={"redirect_uris": ["http://127.0.0.1:1/cb"]}).status_code != 201
        assert authorize(client, registered).status_code == 400  # the first database's client is not in this one
        other_host = client.get("/healthz", headers={"Host": "other.example"})
        assert other_host.status_code == 421  # this deployment's host guard, not the first one's

    with TestClient(bind(app, Deployment.of(first, clock=FrozenClock())), base_url=ISSUER) as client:
        assert client.get("/healthz", headers={"Host": "other.example"}).status_code == 200
        assert authorize(client, registered).status_code == 303  # back on the first database: the client is known


def authorize(client: TestClient[Any], registered: dict[str, Any]) -> Any:
    params = authorize_params(registered, pkce()[1])
    return client.get("/oauth/authorize", params=params, follow_redirects=False)


def test_bind_takes_an_app_with_the_testbeds_controls_only_for_a_deployment_with_a_testbed(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'vouchsim.db'}"
    with_testbed = Deployment.of(Settings(database_url=url, testbed=True, testbed_token="t" * 32))
    without = Deployment.of(Settings(database_url=url))
    app = routes(with_testbed=True)
    with pytest.raises(TypeError):
        bind(routes(), with_testbed)  # the testbed's routes would be missing
    with pytest.raises(TypeError):
        bind(app, without)  # routes for a testbed the deployment does not have
    assert bind(app, with_testbed) is app


def test_an_app_with_the_controls_bound_again_serves_the_new_deployments_testbed(tmp_path: Path) -> None:
    """The controls' routes serve the testbed of the deployment the app is bound to now: its token, its instance,
    its clock, never the last one's."""
    app = routes(with_testbed=True)
    seen: list[tuple[str, float]] = []
    for name, token in (("first", "t" * 32), ("second", "u" * 32)):
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / name}.db",
            testbed=True,
            testbed_token=token,
            allowed_hosts=TEST_HOSTS,
        )
        deployment = Deployment.of(settings, clock=FrozenClock())
        assert deployment.testbed is not None
        with TestClient(bind(app, deployment), base_url=ISSUER) as client:
            for other in {"t" * 32, "u" * 32} - {token}:
                refused = client.get("/testbed/clock", headers={"Authorization": f"Bearer {other}"})
                assert refused.status_code == 401  # the other deployment's token opens nothing
                assert refused.headers["vouchsim-testbed-instance"] == deployment.testbed.instance_id
            auth = {"Authorization": f"Bearer {token}"}
            if name == "first":
                assert client.post("/testbed/clock", json={"advance_seconds": 3600}, headers=auth).status_code == 200
            answer = client.get("/testbed/clock", headers=auth)
            assert answer.status_code == 200
            assert answer.headers["vouchsim-testbed-instance"] == deployment.testbed.instance_id
            seen.append((answer.headers["vouchsim-testbed-instance"], answer.json()["offset_seconds"]))
    (first, first_offset), (second, second_offset) = seen
    assert first != second
    assert first_offset == 3600 and second_offset == 0  # the second testbed's clock, untouched
