"""The signed decision statement of docs/delegations.md: exact bytes, verbatim values, a signature that
verifies with the device's public key."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from companion.tests.fakes import b64url_decode, expected_statement, sample_delegation
from vouchsim.companion.core.decisions import (
    STATEMENT_PREFIX,
    SignedDecision,
    checked_decision,
    decision_statement,
    sign_decision,
)
from vouchsim.companion.core.schemas import DecisionRequest

SEED = bytes(range(32))
NONCE = "AAECAwQFBgcICQoLDA0ODw"  # base64url of bytes 0..15


def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(SEED)


# Written out by hand from docs/delegations.md, so the format cannot drift silently: the prefix line, then
# the keys in sorted order, no whitespace, non-ASCII as UTF-8 (not \u escapes), JSON escapes for quotes,
# the scopes in the server's order (not sorted), expires_at exactly as the server spelled it.
GOLDEN = (
    "vouchsim-delegation-decision-v1\n"
    '{"audience_id":"aud_test_payments",'
    '"binding_message":"amber-falcon-42",'
    '"decision":"approve",'
    '"delegation_id":"dlg_Q2hlY2tlZA",'
    '"expires_at":"2026-11-25T15:05:00.250+00:00",'
    '"nonce":"AAECAwQFBgcICQoLDA0ODw",'
    '"purpose":"Pay 12 € to \\"Zoë\\"",'
    '"scopes":["payments.prepare","payments.identity"]}'
).encode()


def test_statement_bytes_match_the_golden_value() -> None:
    delegation = sample_delegation(
        delegation_id="dlg_Q2hlY2tlZA",
        scopes=["payments.prepare", "payments.identity"],
        purpose='Pay 12 € to "Zoë"',
        expires_at="2026-11-25T15:05:00.250+00:00",
    )
    statement = decision_statement(delegation, "approve", NONCE)
    assert statement == GOLDEN
    assert "€".encode() in statement
    assert b"\\u20ac" not in statement


def test_deny_changes_only_the_decision() -> None:
    delegation = sample_delegation()
    approve = decision_statement(delegation, "approve", NONCE)
    deny = decision_statement(delegation, "deny", NONCE)
    assert deny == approve.replace(b'"decision":"approve"', b'"decision":"deny"')


def test_statement_matches_the_fakes_independent_spelling() -> None:
    record = {
        "audience_id": "aud_ü",
        "binding_message": "tiny-owl-7",
        "delegation_id": "dlg_9",
        "expires_at": "2026-11-25T15:05:00Z",
        "purpose": "line\nbreak, tab\t, backslash \\ and \u2028",
        "scopes": [],
    }
    delegation = sample_delegation(**record)
    assert decision_statement(delegation, "deny", NONCE) == expected_statement(record, "deny", NONCE)


def test_fields_outside_the_statement_do_not_change_it() -> None:
    base = decision_statement(sample_delegation(), "approve", NONCE)
    other = sample_delegation(
        status="approved",
        client_name="Someone else",
        audience_name="Renamed",
        created_at="2020-01-01T00:00:00Z",
        decided_by="dev_9",
    )
    assert decision_statement(other, "approve", NONCE) == base


@pytest.mark.parametrize(
    "change",
    [
        {"audience_id": "aud_other"},
        {"binding_message": "other-words-1"},
        {"delegation_id": "dlg_2"},
        {"expires_at": "2026-11-25T15:05:00+00:00"},  # the same instant, spelled differently
        {"purpose": "Something else."},
        {"scopes": ["payments.prepare", "payments.identity"]},
    ],
)
def test_every_statement_field_is_covered(change: dict[str, object]) -> None:
    assert decision_statement(sample_delegation(**change), "approve", NONCE) != decision_statement(
        sample_delegation(), "approve", NONCE
    )


def test_statement_starts_with_the_version_line() -> None:
    assert STATEMENT_PREFIX == b"vouchsim-delegation-decision-v1\n"
    assert decision_statement(sample_delegation(), "approve", NONCE).startswith(STATEMENT_PREFIX + b"{")


def test_signed_decision_verifies_with_the_public_key() -> None:
    delegation = sample_delegation()
    signed = sign_decision(key(), delegation, "approve", random_bytes=lambda n: bytes(range(n)))
    assert signed.nonce == NONCE
    assert signed.statement == decision_statement(delegation, "approve", NONCE)
    key().public_key().verify(b64url_decode(signed.signature), signed.statement)
    assert "=" not in signed.signature and len(signed.signature) == 86
    assert signed.request() == DecisionRequest(decision="approve", nonce=NONCE, signature=signed.signature)


def test_signature_does_not_verify_for_another_decision_or_key() -> None:
    delegation = sample_delegation()
    signed = sign_decision(key(), delegation, "approve")
    with pytest.raises(InvalidSignature):
        key().public_key().verify(b64url_decode(signed.signature), decision_statement(delegation, "deny", signed.nonce))
    with pytest.raises(InvalidSignature):
        Ed25519PrivateKey.generate().public_key().verify(b64url_decode(signed.signature), signed.statement)


def test_real_nonces_are_16_random_bytes_and_fresh() -> None:
    delegation = sample_delegation()
    signed = [sign_decision(key(), delegation, "deny") for _ in range(20)]
    assert len({s.nonce for s in signed}) == 20
    assert all(len(b64url_decode(s.nonce)) == 16 and "=" not in s.nonce for s in signed)
    assert all(isinstance(s, SignedDecision) and s.delegation_id == "dlg_1" for s in signed)


@pytest.mark.parametrize("bad", ["approved", "APPROVE", "", "allow"])
def test_only_approve_and_deny_are_decisions(bad: str) -> None:
    with pytest.raises(ValueError, match="approve"):
        checked_decision(bad)
    with pytest.raises(ValueError, match="approve"):
        decision_statement(sample_delegation(), bad, NONCE)  # type: ignore[arg-type]
