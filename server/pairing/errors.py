"""Pairing failures. Device-side codes and statuses are those of docs/device-api.md; the browser-side ones
are for the authorization page, which decides how to show them.
"""

from __future__ import annotations

from vouchsim.server.core.errors import VouchsimError

# -- both sides ----------------------------------------------------------------------------------------------


class PairingNotFound(VouchsimError):
    """This pairing does not exist, or it is not yours."""

    code = "pairing_not_found"
    status = 404


class PairingExpired(VouchsimError):
    """This pairing has expired; start again from the application."""

    code = "pairing_expired"
    status = 410


class PairingClosed(VouchsimError):
    """This pairing is already finished: completed, declined or burnt."""

    code = "pairing_closed"
    status = 409


class PairingConflict(VouchsimError):
    """This pairing changed while the decision was being made; look at it again."""

    code = "pairing_conflict"
    status = 409


# -- the device ----------------------------------------------------------------------------------------------


class InvalidQrPayload(VouchsimError):
    """This QR code is not a Vouchsim pairing QR of this server."""

    code = "invalid_qr_payload"
    status = 400


class PairingAlreadyClaimed(VouchsimError):
    """Another device scanned this pairing first."""

    code = "pairing_already_claimed"
    status = 409


# -- the browser (authorization page) ------------------------------------------------------------------------


class PairingDeclined(PairingClosed):
    """The pairing was declined on the device."""

    code = "pairing_declined"


class PairingBurnt(PairingClosed):
    """Too many wrong pairing codes: this pairing can no longer be completed. Start again from the application."""

    code = "pairing_burnt"


class _WithAttemptsLeft(VouchsimError):
    def __init__(self, attempts_left: int, description: str = "") -> None:
        super().__init__(description)
        self.attempts_left = attempts_left


class WrongPairingCode(_WithAttemptsLeft):
    """That is not the pairing code your device shows."""

    code = "wrong_pairing_code"
    status = 400


class MalformedPairingCode(WrongPairingCode):
    """A pairing code is 8 letters, like BCDF-GHJK. This attempt did not count."""

    code = "malformed_pairing_code"


class PairingNotApproved(_WithAttemptsLeft):
    """The device has not approved this pairing yet, so there is no code to type."""

    code = "pairing_not_approved"
    status = 409


class PairingCodeExpired(_WithAttemptsLeft):
    """The pairing code on your device has expired; approve again on the device for a new one. This attempt did
    not count."""

    code = "pairing_code_expired"
    status = 410
