"""What every request handler may need besides the database: made once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from vouchsim.server.core.clock import Clock
from vouchsim.server.settings import Settings


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    clock: Clock
    # HMAC key for CSRF tokens, pairing codes and pairwise subjects (settings, or generated and stored).
    hmac_key: bytes
