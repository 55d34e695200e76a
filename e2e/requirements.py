"""The requirement manifest (e2e/requirements.toml) and the check that ties it to the e2e tests.

Which test proves what comes from pytest's own collection (so parametrised tests, module-level `pytestmark`
and class marks all count exactly as pytest sees them): `collect()` runs `pytest --collect-only` over e2e/ in a
subprocess with this module loaded as a plugin (`-p e2e.requirements`), which writes every collected item's node
id, its `requirement(...)` ids and whether it is marked `e2e` to the JSON file named by REPORT_ENV.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

E2E = Path(__file__).resolve().parent
REPO = E2E.parent
MANIFEST = E2E / "requirements.toml"
REPORT_ENV = "VOUCHSIM_E2E_REQUIREMENTS_REPORT"
MARKER = "requirement"


@dataclass(frozen=True)
class Requirement:
    id: str
    spec: str
    text: str


@dataclass(frozen=True)
class CollectedTest:
    nodeid: str
    requirements: tuple[str, ...]
    e2e: bool


def load_manifest(path: Path = MANIFEST) -> dict[str, Requirement]:
    with path.open("rb") as file:
        return parse_manifest(tomllib.load(file))


def parse_manifest(data: Mapping[str, Any]) -> dict[str, Requirement]:
    manifest: dict[str, Requirement] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != {"spec", "text"}:
            raise ValueError(f"requirement {key!r} must be a table with exactly `spec` and `text`")
        spec, text = entry["spec"], entry["text"]
        if not (isinstance(spec, str) and spec.strip() and isinstance(text, str) and text.strip()):
            raise ValueError(f"requirement {key!r}: `spec` and `text` must be non-empty strings")
        manifest[key] = Requirement(key, spec.strip(), " ".join(text.split()))
    return manifest


def requirement_ids(item: pytest.Item) -> tuple[str, ...]:
    """The ids of every `requirement(...)` mark on the item (function, class and module marks together)."""
    ids: list[str] = []
    for mark in item.iter_markers(MARKER):
        if mark.kwargs or not all(isinstance(arg, str) for arg in mark.args):
            ids.append(f"<malformed {MARKER} mark: {mark!r}>")
        ids.extend(arg for arg in mark.args if isinstance(arg, str))
    return tuple(dict.fromkeys(ids))


def check(manifest: Mapping[str, Requirement], tests: Iterable[CollectedTest]) -> list[str]:
    """Every problem found, empty when the manifest and the tests agree:
    - every e2e test (marked `e2e`) names at least one requirement;
    - every id a test names is in the manifest;
    - every requirement in the manifest is named by at least one test."""
    problems: list[str] = []
    covered: set[str] = set()
    for test in tests:
        if test.e2e and not test.requirements:
            problems.append(f"{test.nodeid}: names no requirement (mark it @pytest.mark.{MARKER}(...))")
        for requirement in test.requirements:
            if requirement in manifest:
                covered.add(requirement)
            else:
                problems.append(f"{test.nodeid}: names {requirement!r}, which is not in {MANIFEST.name}")
    problems.extend(
        f"{requirement}: no test proves it ({manifest[requirement].spec})"
        for requirement in manifest
        if requirement not in covered
    )
    return problems


def collect(paths: Iterable[Path] = (E2E,), report: Path | None = None) -> list[CollectedTest]:
    """What pytest collects from `paths`, with each item's requirement ids (no server is started)."""
    if report is None:
        import tempfile

        with tempfile.TemporaryDirectory() as directory:
            return collect(paths, Path(directory) / "collected.json")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "e2e.requirements"),
            *("-c", str(REPO / "pyproject.toml"), "--rootdir", str(REPO), *map(str, paths)),
        ],
        cwd=REPO,
        env={**os.environ, REPORT_ENV: str(report)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 or not report.exists():
        raise RuntimeError(f"collecting the e2e tests failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return [
        CollectedTest(entry["nodeid"], tuple(entry["requirements"]), entry["e2e"])
        for entry in json.loads(report.read_text())
    ]


# --- the plugin side (loaded with `-p e2e.requirements` in the collecting subprocess) -------------------


def pytest_collection_finish(session: pytest.Session) -> None:
    if not (path := os.environ.get(REPORT_ENV)):
        return
    entries = [
        {
            "nodeid": item.nodeid,
            "requirements": list(requirement_ids(item)),
            "e2e": item.get_closest_marker("e2e") is not None,
        }
        for item in session.items
    ]
    Path(path).write_text(json.dumps(entries, indent=1))
