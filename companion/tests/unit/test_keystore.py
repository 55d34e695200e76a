"""Keystore: file modes, round trips, the fingerprint, and clear errors for missing or damaged state."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from companion.tests.fakes import b64url_decode, enrolment_for
from vouchsim.companion.core.errors import KeystoreError, NotEnrolledError
from vouchsim.companion.core.keystore import (
    Keystore,
    fingerprint,
    generate_key,
    public_key_b64url,
    public_key_bytes,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fingerprint_is_sha256_prefix_upper_case_in_groups_of_four() -> None:
    raw = bytes(32)
    digest = hashlib.sha256(raw).hexdigest().upper()  # 66687AADF862BD77...
    assert fingerprint(raw) == f"{digest[:4]}-{digest[4:8]}-{digest[8:12]}-{digest[12:16]}"
    assert fingerprint(raw) == "6668-7AAD-F862-BD77"


def test_public_key_is_raw_32_bytes_in_unpadded_base64url() -> None:
    key = generate_key()
    encoded = public_key_b64url(key)
    assert "=" not in encoded
    assert len(encoded) == 43
    assert b64url_decode(encoded) == public_key_bytes(key)
    assert len(public_key_bytes(key)) == 32


def test_not_enrolled_is_a_clear_error(state_dir: Path) -> None:
    keystore = Keystore(state_dir)
    assert keystore.read_key() is None
    assert keystore.read_enrolment() is None
    with pytest.raises(NotEnrolledError, match="not enrolled"):
        keystore.load_identity()
    assert not state_dir.exists()  # reading never creates state


def test_save_then_load_round_trips(state_dir: Path) -> None:
    keystore, key = Keystore(state_dir), generate_key()
    record = enrolment_for(key)
    keystore.save(key, record)
    identity = Keystore(state_dir).load_identity()
    assert identity.enrolment == record
    assert identity.device_id == "dev_1"
    assert public_key_bytes(identity.key) == public_key_bytes(key)


def test_files_are_0600_and_the_directory_0700(state_dir: Path) -> None:
    old_umask = os.umask(0o022)  # a typical permissive umask must not widen the modes
    try:
        key = generate_key()
        Keystore(state_dir).save(key, enrolment_for(key))
    finally:
        os.umask(old_umask)
    assert mode(state_dir) == 0o700
    assert mode(state_dir / "device_key.pem") == 0o600
    assert mode(state_dir / "enrolment.json") == 0o600
    assert sorted(p.name for p in state_dir.iterdir()) == ["device_key.pem", "enrolment.json"]


def test_an_existing_loose_directory_is_tightened(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o755)
    os.chmod(state_dir, 0o755)  # noqa: S103 - the loose mode is the point of the test
    key = generate_key()
    Keystore(state_dir).save(key, enrolment_for(key))
    assert mode(state_dir) == 0o700


def test_saving_again_replaces_the_key(state_dir: Path) -> None:
    keystore = Keystore(state_dir)
    first, second = generate_key(), generate_key()
    keystore.save(first, enrolment_for(first))
    keystore.save(second, enrolment_for(second))
    loaded = keystore.read_key()
    assert loaded is not None
    assert public_key_bytes(loaded) == public_key_bytes(second)
    assert mode(state_dir / "device_key.pem") == 0o600


def test_damaged_key_file_is_a_keystore_error(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "device_key.pem").write_text("not a key")
    with pytest.raises(KeystoreError, match="unreadable"):
        Keystore(state_dir).read_key()


def test_damaged_enrolment_record_is_a_keystore_error(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "enrolment.json").write_text("{")
    with pytest.raises(KeystoreError, match="damaged"):
        Keystore(state_dir).load_identity()


def test_record_without_key_is_a_keystore_error(state_dir: Path) -> None:
    keystore, key = Keystore(state_dir), generate_key()
    keystore.save(key, enrolment_for(key))
    (state_dir / "device_key.pem").unlink()
    with pytest.raises(KeystoreError, match="no device key"):
        keystore.load_identity()


def test_key_that_does_not_match_the_record_is_a_keystore_error(state_dir: Path) -> None:
    keystore, key = Keystore(state_dir), generate_key()
    keystore.save(key, enrolment_for(generate_key()))
    with pytest.raises(KeystoreError, match="does not match"):
        keystore.load_identity()


def test_unwritable_state_dir_is_a_keystore_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    key = generate_key()
    with pytest.raises(KeystoreError, match="Cannot create"):
        Keystore(blocker / "state").save(key, enrolment_for(key))
