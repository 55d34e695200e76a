"""The audience registry: seeded from fixtures/audiences.json, or a file named by the settings; a file that is
not usable stops the server with a message naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vouchsim.server.app import create_app
from vouchsim.server.delegation.audiences import DEFAULT_FILE, AudienceFileError, AudienceRegistry
from vouchsim.server.settings import Settings, settings_from

GOOD = {"audiences": [{"audience_id": "aud_local", "name": "Local", "scopes": ["a.read", "a.write"]}]}


def write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "audiences.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_the_fixture_registry_has_the_test_audiences() -> None:
    registry = AudienceRegistry.load(DEFAULT_FILE)
    payments = registry.get("aud_test_payments")
    assert payments is not None
    assert (payments.name, payments.scopes) == ("Test payments", ("payments.identity", "payments.prepare"))
    assert {"aud_test_payments", "aud_test_calendar", "aud_test_files"} <= {a.audience_id for a in registry}
    assert registry.get("aud_nope") is None
    assert registry.name_of("aud_gone") == "aud_gone"


def test_the_settings_name_another_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    settings = settings_from({"VOUCHSIM_AUDIENCES_FILE": str(path)})
    assert settings.audiences_file == str(path)
    registry = AudienceRegistry.from_settings(settings)
    assert [a.audience_id for a in registry] == ["aud_local"]
    assert len(AudienceRegistry.from_settings(Settings())) == len(AudienceRegistry.load(DEFAULT_FILE))


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "not valid"),
        ({"audiences": [{"audience_id": "aud_x", "scopes": ["a"]}]}, "name"),
        ({"audiences": [{"audience_id": "aud_x", "name": "X", "scopes": []}]}, "scopes"),
        ({"audiences": [{"audience_id": "has space", "name": "X", "scopes": ["a"]}]}, "audience_id"),
        ({"audiences": [{"audience_id": "aud_x", "name": "X", "scopes": ["bad scope"]}]}, "scopes"),
        ({"audiences": [{"audience_id": "aud_x", "name": "X", "scopes": ["a"], "colour": "red"}]}, "colour"),
        ({"audiences": [GOOD["audiences"][0], GOOD["audiences"][0]]}, "listed twice"),
        ({"audiences": [{"audience_id": "aud_x", "name": "X", "scopes": ["a", "a"]}]}, "scope twice"),
        ([], "not valid"),
    ],
)
def test_a_malformed_file_is_refused_clearly(tmp_path: Path, content: object, says: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(AudienceFileError) as caught:
        AudienceRegistry.load(path)
    assert str(path) in str(caught.value) and says in str(caught.value)


def test_a_missing_file_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(AudienceFileError, match="cannot read the audience file"):
        AudienceRegistry.load(tmp_path / "nope.json")


def test_the_app_does_not_start_with_a_bad_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"audiences": "none"})
    with pytest.raises(AudienceFileError):
        create_app(Settings(audiences_file=str(path)))
