"""The signed decision on a delegation (docs/delegations.md, "The signed decision statement").

The device signs, with its enrolled Ed25519 key, the UTF-8 bytes of

    vouchsim-delegation-decision-v1\\n<canonical JSON>

where the canonical JSON holds `audience_id`, `binding_message`, `decision`, `delegation_id`, `expires_at`,
`nonce`, `purpose` and `scopes`, keys sorted, no whitespace, non-ASCII kept as it is. Every value but
`decision` and `nonce` is copied verbatim from the delegation object the server sent; the server rebuilds
the same bytes from its own record, so any drift here is a refused decision (`invalid_decision`).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Final, Literal, get_args

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vouchsim.companion.core.schemas import DecisionRequest, Delegation
from vouchsim.companion.core.signing import NONCE_BYTES, RandomBytes, b64url_encode

STATEMENT_PREFIX: Final = b"vouchsim-delegation-decision-v1\n"

Decision = Literal["approve", "deny"]
DECISIONS: Final[tuple[Decision, ...]] = get_args(Decision)


def checked_decision(value: str) -> Decision:
    """`value` as a Decision; ValueError for anything but `approve` and `deny`."""
    for decision in DECISIONS:
        if value == decision:
            return decision
    raise ValueError(f"a decision is 'approve' or 'deny', not {value!r}")


def statement_fields(delegation: Delegation, decision: Decision, nonce: str) -> dict[str, object]:
    """The object the canonical JSON encodes; values as the server sent them."""
    return {
        "audience_id": delegation.audience_id,
        "binding_message": delegation.binding_message,
        "decision": checked_decision(decision),
        "delegation_id": delegation.delegation_id,
        "expires_at": delegation.expires_at,
        "nonce": nonce,
        "purpose": delegation.purpose,
        "scopes": list(delegation.scopes),
    }


def decision_statement(delegation: Delegation, decision: Decision, nonce: str) -> bytes:
    """The exact bytes the device signs."""
    canonical = json.dumps(
        statement_fields(delegation, decision, nonce), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return STATEMENT_PREFIX + canonical.encode("utf-8")


@dataclass(frozen=True)
class SignedDecision:
    """A decision ready to send, with the statement it signs (to show the person, or to keep)."""

    delegation_id: str
    decision: Decision
    nonce: str
    signature: str
    statement: bytes

    def request(self) -> DecisionRequest:
        return DecisionRequest(decision=self.decision, nonce=self.nonce, signature=self.signature)


def sign_decision(
    key: Ed25519PrivateKey,
    delegation: Delegation,
    decision: Decision,
    *,
    random_bytes: RandomBytes = secrets.token_bytes,
) -> SignedDecision:
    """Sign `decision` on `delegation` with a fresh 16-byte nonce."""
    nonce = b64url_encode(random_bytes(NONCE_BYTES))
    statement = decision_statement(delegation, decision, nonce)
    return SignedDecision(
        delegation_id=delegation.delegation_id,
        decision=checked_decision(decision),
        nonce=nonce,
        signature=b64url_encode(key.sign(statement)),
        statement=statement,
    )
