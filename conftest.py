"""How the suite is spread over pytest-xdist's workers (`-n 2 --dist loadgroup`, set in pyproject.toml), and how
often their garbage collector walks everything.

Most tests are independent and go to whichever worker is free. A test that uses a module-scoped fixture (a live
server, a headless browser, the companion's live server for its CLI tests) shares it with the other tests of its
module: they are one xdist group, so the fixture is built once, on one worker, as in a serial run. A module's
tests on SQLite and on PostgreSQL are two groups (their module-scoped servers differ), so they can run side by side.
"""

from __future__ import annotations

import gc

import pytest

# A full collection walks every object alive. With CPython's thresholds (700, 10, 10) a test worker ran one every
# test or two: each test's Textual app, Litestar app or Hypothesis run outlives two young collections and dies old,
# which lets the next full collection start. The full suite on SQLite: 52.7 s of the workers' CPU went to the
# collector, 40.0 s of it in 63 full collections. With at most one full collection per 1,000 middle ones (not 10),
# the young generations unchanged, there were 4 and the collector took 20.7 s; a worker peaked at 850 MB, not 430.
WORKER_GC_THRESHOLDS = (700, 10, 1000)


def pytest_configure(config: pytest.Config) -> None:
    gc.set_threshold(*WORKER_GC_THRESHOLDS)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns `xdist_group` marks into scheduling groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if group := _module_fixture_group(item):
            item.add_marker(pytest.mark.xdist_group(group))


def _module_fixture_group(item: pytest.Item) -> str | None:
    """`module.py[param]`: the item's module, with the params of the module-scoped fixtures it uses; None if it
    uses none."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    shared = [name for name, defs in info.name2fixturedefs.items() if defs and defs[-1].scope == "module"]
    if not shared:
        return None
    callspec = getattr(item, "callspec", None)
    params = [str(callspec.params[name]) for name in sorted(shared) if callspec and name in callspec.params]
    return item.nodeid.split("::", 1)[0] + (f"[{','.join(params)}]" if params else "")
