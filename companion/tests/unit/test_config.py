"""CompanionConfig: options over variables over defaults, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from vouchsim.companion.core.config import (
    DEFAULT_SERVER_URL,
    DEFAULT_STATE_DIR,
    CompanionConfig,
    ConfigError,
    load_config,
    normalize_server_url,
)


def test_defaults_without_options_or_variables() -> None:
    config = load_config({})
    assert config.state_dir == DEFAULT_STATE_DIR == Path("var/companion")
    assert config.server_url is None
    assert config.server_for(None) == DEFAULT_SERVER_URL == "http://127.0.0.1:8741"


def test_variables_are_read() -> None:
    config = load_config({"VOUCHSIM_COMPANION_STATE": "/tmp/phone", "VOUCHSIM_SERVER_URL": "https://vouch.example/"})
    assert config.state_dir == Path("/tmp/phone")
    assert config.server_url == "https://vouch.example"


def test_options_win_over_variables() -> None:
    environ = {"VOUCHSIM_COMPANION_STATE": "/tmp/env", "VOUCHSIM_SERVER_URL": "http://env:1"}
    config = load_config(environ, state_dir="/tmp/opt", server_url="http://opt:2")
    assert config.state_dir == Path("/tmp/opt")
    assert config.server_url == "http://opt:2"


def test_empty_variables_count_as_unset() -> None:
    config = load_config({"VOUCHSIM_COMPANION_STATE": "", "VOUCHSIM_SERVER_URL": ""})
    assert config == CompanionConfig()


def test_explicit_server_wins_over_the_enrolled_one() -> None:
    assert CompanionConfig(server_url="http://a:1").server_for("http://b:2") == "http://a:1"
    assert CompanionConfig().server_for("http://b:2") == "http://b:2"


@pytest.mark.parametrize("url", ["127.0.0.1:8741", "ftp://host", "http://", "http://h/?x=1", "http://h/#f"])
def test_unusable_server_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="server URL"):
        normalize_server_url(url)


def test_server_url_keeps_a_path_prefix_and_drops_the_trailing_slash() -> None:
    assert normalize_server_url(" https://h.example/vouch/ ") == "https://h.example/vouch"


def test_config_is_frozen() -> None:
    config = CompanionConfig()
    with pytest.raises(AttributeError):
        config.server_url = "http://x"  # type: ignore[misc]
