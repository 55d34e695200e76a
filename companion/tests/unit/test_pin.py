"""The local PIN: stored as a salted scrypt hash in a 0600 file, checked in constant time."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from vouchsim.companion.core.errors import KeystoreError
from vouchsim.companion.core.pin import InvalidPinError, PinNotSetError, PinStore, check_pin

CHEAP = 2**4


def test_a_set_pin_verifies_and_no_other_does(state_dir: Path) -> None:
    pins = PinStore(state_dir, cost=CHEAP)
    assert not pins.is_set()
    pins.set("2468")
    assert pins.is_set()
    assert pins.verify("2468")
    for wrong in ("2469", "24680", "", "abcd", "２４６８"):  # noqa: RUF001 - full-width digits are not digits here
        assert not pins.verify(wrong)


def test_the_file_holds_neither_the_pin_nor_an_unsalted_hash_and_is_private(state_dir: Path) -> None:
    first = PinStore(state_dir / "a", cost=CHEAP)
    second = PinStore(state_dir / "b", cost=CHEAP)
    first.set("2468")
    second.set("2468")
    record = json.loads(first.path.read_text())
    assert set(record) == {"scheme", "n", "r", "p", "salt", "hash"}
    assert record["scheme"] == "scrypt"
    assert record["n"] == CHEAP
    assert "2468" not in first.path.read_text()
    assert record["hash"] != json.loads(second.path.read_text())["hash"]  # salted
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.path.parent.stat().st_mode) == 0o700
    assert not [p for p in first.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_pin_set_with_another_cost_still_verifies(state_dir: Path) -> None:
    PinStore(state_dir, cost=CHEAP).set("135790")
    assert PinStore(state_dir, cost=2**5).verify("135790")


def test_setting_again_replaces_the_pin(state_dir: Path) -> None:
    pins = PinStore(state_dir, cost=CHEAP)
    pins.set("2468")
    pins.set("1357")
    assert pins.verify("1357")
    assert not pins.verify("2468")


@pytest.mark.parametrize("pin", ["", "123", "1234567890123", "12a4", " 1234", "١٢٣٤"])
def test_a_malformed_pin_is_refused(state_dir: Path, pin: str) -> None:
    with pytest.raises(InvalidPinError):
        check_pin(pin)
    with pytest.raises(InvalidPinError):
        PinStore(state_dir, cost=CHEAP).set(pin)
    assert not PinStore(state_dir, cost=CHEAP).is_set()


def test_verifying_without_a_pin_says_so(state_dir: Path) -> None:
    with pytest.raises(PinNotSetError):
        PinStore(state_dir, cost=CHEAP).verify("2468")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"scheme": "scrypt"}',
        '{"scheme": "md5", "n": 16, "r": 8, "p": 1, "salt": "AA", "hash": "AA"}',
        '{"scheme": "scrypt", "n": 1073741824, "r": 8, "p": 1, "salt": "AA", "hash": "AA"}',
        '{"scheme": "scrypt", "n": 16, "r": 8, "p": 1, "salt": "AA", "hash": "AA", "extra": 1}',
    ],
)
def test_a_damaged_record_is_a_keystore_error(state_dir: Path, content: str) -> None:
    pins = PinStore(state_dir, cost=CHEAP)
    state_dir.mkdir(parents=True)
    pins.path.write_text(content)
    with pytest.raises(KeystoreError):
        pins.verify("2468")


def test_the_cost_must_be_a_power_of_two(state_dir: Path) -> None:
    with pytest.raises(ValueError, match="power of two"):
        PinStore(state_dir, cost=1000)
