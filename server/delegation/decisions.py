"""The device's signed decision (docs/delegations.md, "The signed decision statement").

The device signs, with its enrolled Ed25519 key, the UTF-8 bytes of

    vouchsim-delegation-decision-v1\\n<canonical JSON>

where the canonical JSON holds `audience_id`, `binding_message`, `decision`, `delegation_id`, `expires_at`,
`nonce`, `purpose` and `scopes`, keys sorted, no whitespace, non-ASCII kept as is. The server rebuilds the
statement from its own record (`expires_at` printed exactly as the API prints it), so a device can only sign
what it was shown, and a statement cannot be moved to another delegation.
"""

from __future__ import annotations

import json
import re

from vouchsim.server.core.clock import isoformat
from vouchsim.server.core.crypto import b64url_decode
from vouchsim.server.core.ed25519 import load_public_key, signature_matches
from vouchsim.server.delegation.errors import InvalidDecision
from vouchsim.server.delegation.states import DelegationEvent
from vouchsim.server.storage.repositories.delegations import StoredDelegation

STATEMENT_VERSION = "vouchsim-delegation-decision-v1"
DECISIONS = {"approve": DelegationEvent.APPROVE, "deny": DelegationEvent.DENY}

_NONCE = re.compile(r"^[A-Za-z0-9_-]{22,128}$")  # 16+ bytes, base64url; the column holds 128 characters
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{86}$")  # 64 bytes, base64url without padding


def decision_event(decision: str) -> DelegationEvent:
    event = DECISIONS.get(decision)
    if event is None:
        raise InvalidDecision('decision must be "approve" or "deny".')
    return event


def well_formed_nonce(nonce: str) -> bool:
    return _NONCE.match(nonce) is not None


def check_shape(nonce: str, signature: str) -> None:
    if not well_formed_nonce(nonce):
        raise InvalidDecision("nonce must be 16 or more random bytes, base64url without padding.")
    if not _SIGNATURE.match(signature):
        raise InvalidDecision("signature must be an Ed25519 signature, base64url without padding.")


def statement(row: StoredDelegation, decision: str, nonce: str) -> str:
    content = {
        "audience_id": row.audience_id,
        "binding_message": row.binding_message,
        "decision": decision,
        "delegation_id": row.id,
        "expires_at": isoformat(row.expires_at),
        "nonce": nonce,
        "purpose": row.purpose,
        "scopes": list(row.scopes),
    }
    return f"{STATEMENT_VERSION}\n{json.dumps(content, sort_keys=True, separators=(',', ':'), ensure_ascii=False)}"


def verify(public_key: str | None, text: str, signature: str) -> None:
    """InvalidDecision unless `signature` is the device key's signature of `text`."""
    key = load_public_key(public_key) if public_key is not None else None
    if key is None or not signature_matches(key, b64url_decode(signature), text.encode()):
        raise InvalidDecision("The signature does not match this decision on this delegation by this device.")
