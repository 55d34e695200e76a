"""`serving(app)`: what `vouchsim serve` adds to the app it runs, and tests (which run apps in process) do not."""

from __future__ import annotations

import gc
from typing import Any

from litestar.testing import TestClient

from server.tests.http.conftest import ISSUER, TEST_HOSTS
from vouchsim.server.app import create_app, serving
from vouchsim.server.settings import Settings


def test_a_served_app_freezes_what_its_start_made_and_a_test_app_does_not(database_url: str) -> None:
    settings = Settings(database_url=database_url, allowed_hosts=TEST_HOSTS)
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(settings), base_url=ISSUER) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() == 0  # a test's app never freezes the test process's objects
    try:
        app: Any = serving(create_app(settings))
        with TestClient(app, base_url=ISSUER) as client:
            assert gc.get_freeze_count() > 100_000  # the modules, the routes, the app: out of the collector's walk
            assert client.get("/healthz").status_code == 200
    finally:
        gc.unfreeze()
