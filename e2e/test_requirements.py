"""The requirement manifest (e2e/requirements.toml) and the e2e tests agree: every requirement is proved by at
least one test, every e2e test names at least one requirement, and every id a test names exists.

Fast and server-less: the e2e tests are only collected (by pytest, in a subprocess), never run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from e2e.requirements import (
    MANIFEST,
    CollectedTest,
    Requirement,
    check,
    collect,
    load_manifest,
    parse_manifest,
)

ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")


@pytest.fixture(scope="module")
def collected() -> list[CollectedTest]:
    return collect()


def test_the_manifest_is_well_formed() -> None:
    manifest = load_manifest()
    assert len(manifest) >= 20, sorted(manifest)
    bad = [requirement for requirement in manifest if not ID.match(requirement)]
    assert not bad, f"ids must look like AREA-WORDS: {bad}"


def test_every_requirement_has_a_test_and_every_e2e_test_names_one(collected: list[CollectedTest]) -> None:
    e2e = [test for test in collected if test.e2e]
    assert len(e2e) >= 20, [test.nodeid for test in collected]  # the collection really saw the e2e modules
    assert not any("test_requirements.py" in test.nodeid for test in e2e)
    problems = check(load_manifest(), collected)
    assert not problems, f"{MANIFEST} and the e2e tests disagree:\n" + "\n".join(problems)


def test_parametrised_tests_carry_their_function_marks(collected: list[CollectedTest]) -> None:
    downgrades = [test for test in collected if "test_pkce_downgrade_is_sent_back_as_invalid_request[" in test.nodeid]
    assert len(downgrades) >= 3, [test.nodeid for test in collected]
    assert all("OAUTH-PKCE-NO-DOWNGRADE" in test.requirements for test in downgrades)


# --- the checker catches what it must ------------------------------------------------------------------

SAMPLE = {
    "A-ONE": Requirement("A-ONE", "RFC 1 §1", "one"),
    "A-TWO": Requirement("A-TWO", "RFC 2 §2", "two"),
}


def test_the_checker_accepts_a_consistent_sample() -> None:
    tests = [
        CollectedTest("t.py::test_one[sqlite]", ("A-ONE",), e2e=True),
        CollectedTest("t.py::test_two", ("A-ONE", "A-TWO"), e2e=True),
        CollectedTest("t.py::test_helper_free", (), e2e=False),  # not an e2e test: need not name one
    ]
    assert check(SAMPLE, tests) == []


def test_the_checker_reports_an_uncovered_requirement() -> None:
    problems = check(SAMPLE, [CollectedTest("t.py::test_one", ("A-ONE",), e2e=True)])
    assert problems == ["A-TWO: no test proves it (RFC 2 §2)"]


def test_the_checker_reports_an_e2e_test_without_a_requirement() -> None:
    tests = [
        CollectedTest("t.py::test_one", ("A-ONE", "A-TWO"), e2e=True),
        CollectedTest("t.py::test_unmarked[postgres]", (), e2e=True),
    ]
    assert check(SAMPLE, tests) == [
        "t.py::test_unmarked[postgres]: names no requirement (mark it @pytest.mark.requirement(...))"
    ]


def test_the_checker_reports_an_unknown_id() -> None:
    tests = [CollectedTest("t.py::test_one", ("A-ONE", "A-TWO", "A-THREE"), e2e=True)]
    assert check(SAMPLE, tests) == ["t.py::test_one: names 'A-THREE', which is not in requirements.toml"]


def test_a_broken_manifest_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly `spec` and `text`"):
        parse_manifest({"A-ONE": {"spec": "RFC 1"}})
    with pytest.raises(ValueError, match="non-empty"):
        parse_manifest({"A-ONE": {"spec": " ", "text": "one"}})


def test_the_real_collection_sees_an_unmarked_test(tmp_path: Path) -> None:
    """Through pytest itself: an unmarked e2e test and an unknown id (on a parametrised test) in a scratch
    module outside the repository are reported."""
    scratch = tmp_path / "test_scratch.py"
    scratch.write_text(
        "import pytest\n\n"
        "pytestmark = pytest.mark.e2e\n\n\n"
        "def test_unmarked() -> None:\n    pass\n\n\n"
        '@pytest.mark.requirement("NOT-IN-MANIFEST")\n'
        '@pytest.mark.parametrize("x", [1, 2])\n'
        "def test_unknown(x: int) -> None:\n    pass\n"
    )
    tests = collect([scratch], tmp_path / "collected.json")
    problems = [problem.split("::", 1)[1] for problem in check({}, tests)]
    assert problems == [
        "test_unmarked: names no requirement (mark it @pytest.mark.requirement(...))",
        "test_unknown[1]: names 'NOT-IN-MANIFEST', which is not in requirements.toml",
        "test_unknown[2]: names 'NOT-IN-MANIFEST', which is not in requirements.toml",
    ]
