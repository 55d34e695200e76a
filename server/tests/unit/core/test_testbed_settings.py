"""The testbed's settings: `VOUCHSIM_TESTBED` as a switch, its token, its journal size, and how `serve` makes a
token when none is set (once, for every worker)."""

from __future__ import annotations

import pytest

from vouchsim.server.cli import _with_testbed_token
from vouchsim.server.settings import Settings, settings_environment, settings_from


@pytest.mark.parametrize(("raw", "on"), [("1", True), ("true", True), ("Yes", True), ("0", False), ("off", False)])
def test_the_switch_reads_the_usual_spellings(raw: str, on: bool) -> None:
    assert settings_from({"VOUCHSIM_TESTBED": raw}).testbed is on


def test_bad_testbed_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="VOUCHSIM_TESTBED must be 1 or 0"):
        settings_from({"VOUCHSIM_TESTBED": "maybe"})
    with pytest.raises(ValueError, match="testbed_token"):
        settings_from({"VOUCHSIM_TESTBED_TOKEN": "has a space"})
    with pytest.raises(ValueError, match="testbed_journal_size"):
        settings_from({"VOUCHSIM_TESTBED_JOURNAL_SIZE": "0"})


def test_a_worker_reads_back_the_settings_it_was_started_with() -> None:
    settings = Settings(testbed=True, testbed_token="tok", testbed_journal_size=5)
    environment = settings_environment(settings)
    assert environment["VOUCHSIM_TESTBED"] == "1"
    assert settings_from(environment) == settings
    assert settings_from(settings_environment(Settings())).testbed is False


def test_serve_makes_a_token_only_when_the_testbed_is_on_and_none_is_set() -> None:
    made, generated = _with_testbed_token(Settings(testbed=True))
    assert generated and len(made.testbed_token) >= 32
    assert _with_testbed_token(Settings(testbed=True, testbed_token="mine")) == (
        Settings(testbed=True, testbed_token="mine"),
        False,
    )
    assert _with_testbed_token(Settings()) == (Settings(), False)
