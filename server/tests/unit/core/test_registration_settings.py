"""The registration settings: VOUCHSIM_REGISTRATION, VOUCHSIM_CLIENTS_FILE, VOUCHSIM_CIMD_ALLOW_HOSTS,
VOUCHSIM_CIMD_CA_FILE — parsed and validated once, listed in `vouchsim serve --help`, and a file that cannot be used
stops `vouchsim serve` with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vouchsim.server.cli import main
from vouchsim.server.settings import Settings, settings_environment, settings_from


def test_defaults() -> None:
    settings = Settings()
    assert settings.registration_modes == {"cimd", "dcr"}
    assert settings.clients_file == "" and settings.cimd_ca_file == ""
    assert settings.cimd_allow_host_list == ()


@pytest.mark.parametrize(
    ("value", "modes"),
    [
        ("cimd,dcr", {"cimd", "dcr"}),
        ("dcr, cimd", {"cimd", "dcr"}),
        ("cimd", {"cimd"}),
        ("DCR", {"dcr"}),
        ("none", set()),
    ],
)
def test_registration_modes(value: str, modes: set[str]) -> None:
    assert settings_from({"VOUCHSIM_REGISTRATION": value}).registration_modes == modes


@pytest.mark.parametrize("value", ["dcr,oidc", "static", ",", "cimd;dcr"])
def test_an_unknown_registration_mode_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="registration must name cimd, dcr"):
        settings_from({"VOUCHSIM_REGISTRATION": value})


def test_allow_hosts_are_normalised() -> None:
    settings = settings_from({"VOUCHSIM_CIMD_ALLOW_HOSTS": " 127.0.0.1:9443, LocalHost ,[::1]:8443,[::1]"})
    assert settings.cimd_allow_host_list == ("127.0.0.1:9443", "localhost", "[::1]:8443", "[::1]")


@pytest.mark.parametrize(
    "value", ["https://127.0.0.1:9443", "127.0.0.1:9443/path", "127.0.0.1:", "127.0.0.1:99999", "[::1", "[::1]x", "u@h"]
)
def test_a_malformed_allow_host_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="cimd_allow_hosts"):
        settings_from({"VOUCHSIM_CIMD_ALLOW_HOSTS": value})


def test_the_settings_survive_the_trip_to_a_worker_process() -> None:
    settings = Settings(
        registration="cimd", clients_file="/etc/c.json", cimd_allow_hosts="127.0.0.1:9443", cimd_ca_file="/ca.pem"
    )
    assert settings_from(settings_environment(settings)) == settings


def test_serve_help_lists_every_registration_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in (
        "VOUCHSIM_REGISTRATION",
        "VOUCHSIM_CLIENTS_FILE",
        "VOUCHSIM_CIMD_ALLOW_HOSTS",
        "VOUCHSIM_CIMD_CA_FILE",
    ):
        assert name in text
    for option in ("--registration", "--clients-file", "--cimd-allow-hosts", "--cimd-ca-file"):
        assert option in text


def _serve(tmp_path: Path, *options: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'v.db'}", *options])
    return str(exited.value.code)


def test_serve_stops_with_one_line_for_a_bad_clients_file(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [{"client_id": "x", "client_name": "X", "redirect_uris": []}]}))
    message = _serve(tmp_path, "--clients-file", str(path))
    assert message.startswith(f"vouchsim: the clients file {path} is not valid: ") and "\n" not in message
    assert not (tmp_path / "v.db").exists()  # nothing ran


def test_serve_stops_with_one_line_for_a_bad_ca_file(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate")
    message = _serve(tmp_path, "--cimd-ca-file", str(path))
    assert message.startswith(f"vouchsim: cannot load the CA file {path} (VOUCHSIM_CIMD_CA_FILE): ")
    assert "\n" not in message


def test_serve_stops_with_one_line_for_a_bad_setting(tmp_path: Path) -> None:
    assert _serve(tmp_path, "--registration", "everything") == (
        "vouchsim: invalid setting: registration must name cimd, dcr, both (cimd,dcr), or be none"
    )


def test_every_setting_has_a_row_in_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parents[4] / "README.md").read_text()
    missing = [name for name in Settings.__struct_fields__ if f"| `VOUCHSIM_{name.upper()}` |" not in readme]
    assert missing == []
