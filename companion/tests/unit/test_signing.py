"""Request signing: the canonical string, the headers, and a signature that verifies independently."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from companion.tests.fakes import b64url_decode, expected_canonical
from vouchsim.companion.core.signing import RequestSigner, b64url_encode, canonical_string

SEED = bytes(range(32))


def signer(clock: float = 1_795_000_000.9, nonce: bytes = b"\x01" * 16) -> RequestSigner:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    return RequestSigner(key, "dev_1", clock=lambda: clock, random_bytes=lambda n: nonce[:n])


def test_canonical_string_is_six_lines_without_trailing_newline() -> None:
    text = canonical_string("post", "/device/connections?x=1", "1795000000", "AQEB", b'{"a":1}')
    assert text == (
        b"vouchsim-device-v1\n"
        b"POST\n"
        b"/device/connections?x=1\n"
        b"1795000000\n"
        b"AQEB\n" + hashlib.sha256(b'{"a":1}').hexdigest().encode()
    )


def test_empty_body_hashes_the_empty_string() -> None:
    text = canonical_string("GET", "/device/me", "1", "n", b"")
    assert text.endswith(b"\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_headers_use_whole_seconds_and_the_injected_nonce() -> None:
    headers = signer(nonce=bytes(range(16))).headers("GET", "/device/me", b"")
    assert headers["Vouch-Device-Id"] == "dev_1"
    assert headers["Vouch-Timestamp"] == "1795000000"  # floored, not rounded
    assert headers["Vouch-Nonce"] == b64url_encode(bytes(range(16))) == "AAECAwQFBgcICQoLDA0ODw"
    assert "=" not in headers["Vouch-Signature"]


def test_real_nonces_are_16_random_bytes_and_never_repeat() -> None:
    real = RequestSigner(Ed25519PrivateKey.from_private_bytes(SEED), "dev_1")
    nonces = {real.headers("GET", "/device/me", b"")["Vouch-Nonce"] for _ in range(50)}
    assert len(nonces) == 50
    assert all(len(b64url_decode(n)) == 16 for n in nonces)


def test_signature_verifies_over_an_independently_built_canonical_string() -> None:
    body = b'{"qr_payload":"vouchsim://pair"}'
    headers = signer().headers("POST", "/device/pairings/claim", body)
    request = httpx.Request("POST", "http://h/device/pairings/claim", content=body, headers=headers)
    public_key = Ed25519PrivateKey.from_private_bytes(SEED).public_key()
    public_key.verify(b64url_decode(headers["Vouch-Signature"]), expected_canonical(request))


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("GET", "/device/pairings/claim", b"{}"),
        ("POST", "/device/me", b"{}"),
        ("POST", "/device/pairings/claim", b""),
    ],
)
def test_signature_covers_method_path_and_body(method: str, target: str, body: bytes) -> None:
    headers = signer().headers("POST", "/device/pairings/claim", b"{}")
    tampered = canonical_string(method, target, headers["Vouch-Timestamp"], headers["Vouch-Nonce"], body)
    public_key = Ed25519PrivateKey.from_private_bytes(SEED).public_key()
    with pytest.raises(InvalidSignature):
        public_key.verify(b64url_decode(headers["Vouch-Signature"]), tampered)
