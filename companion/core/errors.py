"""Every failure the companion can hit, one class each, with a message a person can act on.

The CLI and the TUI print `str(error)` and, when there is one, `error.hint`; no raw httpx exception or
traceback ever reaches them. API errors are keyed by the wire `error` code of docs/device-api.md.
"""

from __future__ import annotations

from typing import ClassVar


class CompanionError(Exception):
    """Base of every companion failure: `str(error)` is a sentence, `hint` says what to do next."""

    default_message: ClassVar[str] = "The companion failed."
    hint: ClassVar[str] = ""

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self)


# --- local state -------------------------------------------------------------------------------------


class NotEnrolledError(CompanionError):
    default_message = "This companion is not enrolled with a server yet."
    hint = "Run `vouchsim companion enrol --server URL` first."


class AlreadyEnrolledError(CompanionError):
    default_message = "This companion is already enrolled with another server."
    hint = "Pass --force to enrol a new key (the old enrolment is forgotten)."


class KeystoreError(CompanionError):
    default_message = "The companion's state directory is unreadable or damaged."
    hint = "Check the files under the state directory, or enrol again with --force."


class InvalidDeviceNameError(CompanionError):
    default_message = "A device name must be 1 to 64 characters long."


# --- transport ---------------------------------------------------------------------------------------


class TransportError(CompanionError):
    """The request never got an HTTP answer."""

    default_message = "Could not talk to the server."


class ServerUnreachableError(TransportError):
    default_message = "Could not connect to the server."
    hint = "Is the server running, and is --server right?"


class ServerTimeoutError(TransportError):
    default_message = "The server did not answer in time."


class McpEndpointError(CompanionError):
    """The server URL given is the MCP endpoint (what MCP clients are given), not the server's base URL."""

    default_message = "That is the server's MCP endpoint, not its base URL."

    def __init__(self, server_url: str) -> None:
        self.base_url = server_url.rstrip("/").removesuffix("/mcp")
        super().__init__(
            f"{server_url} is the server's MCP endpoint (the URL MCP clients are given); the companion talks to the "
            f"server's base URL, {self.base_url}."
        )

    @property
    def hint(self) -> str:  # type: ignore[override]
        return f"Use --server {self.base_url}"


class UnexpectedResponseError(CompanionError):
    """An HTTP answer that is not what docs/device-api.md promises (a 5xx, HTML, a malformed body)."""

    default_message = "The server sent an unexpected response."


# --- API errors (the `error` code of the JSON error body) --------------------------------------------


class ApiError(CompanionError):
    """An error answer from the device API; also used as-is for codes this companion does not know."""

    code: ClassVar[str] = ""
    default_message = "The server refused the request."

    def __init__(self, description: str = "", *, status: int = 400, code: str = "") -> None:
        super().__init__(description)
        self.status = status
        self.error_code = code or self.code


class InvalidRequestError(ApiError):
    code = "invalid_request"
    default_message = "The server rejected the request as malformed."


class InvalidSignatureError(ApiError):
    code = "invalid_signature"
    default_message = "The server did not accept this device's signature."
    hint = "Check that this machine's clock is right; if the device was removed, enrol again with --force."


class DeviceRevokedError(ApiError):
    """The server revoked this device (it forgot itself, or the operator revoked a lost phone): its key no longer
    works there, for anything. Waiting or retrying does not help."""

    code = "device_revoked"
    default_message = "The server revoked this device: it can no longer pair applications or decide requests."
    hint = "Run `vouchsim companion forget` to delete this device's key, then `vouchsim companion enrol` to start over."


class DeviceExistsError(ApiError):
    code = "device_exists"
    default_message = "This device key is already enrolled."
    hint = "Pass --force to enrol with a new key."


class InvalidQrPayloadError(ApiError):
    code = "invalid_qr_payload"
    default_message = "The server says this QR is not a pairing QR of its own."


class PairingNotFoundError(ApiError):
    code = "pairing_not_found"
    default_message = "The server knows no such pairing (or another device owns it)."


class PairingExpiredError(ApiError):
    code = "pairing_expired"
    default_message = "This pairing has expired."
    hint = "Reload the authorization page for a fresh QR."


class PairingAlreadyClaimedError(ApiError):
    code = "pairing_already_claimed"
    default_message = "Another device scanned this pairing QR first."


class PairingClosedError(ApiError):
    code = "pairing_closed"
    default_message = "This pairing is closed (declined, completed or burnt)."
    hint = "Reload the authorization page for a fresh QR."


class ConnectionNotFoundError(ApiError):
    code = "connection_not_found"
    default_message = "No such connection for this user."
    hint = "List them with `vouchsim companion connections`."


class DelegationNotFoundError(ApiError):
    code = "delegation_not_found"
    default_message = "The server knows no such delegation for this user."
    hint = "List them with `vouchsim companion pending` or `vouchsim companion history`."


class DelegationClosedError(ApiError):
    code = "delegation_closed"
    default_message = "This delegation is no longer pending."

    def __init__(
        self, description: str = "", *, status: int = 409, code: str = "", delegation_status: str | None = None
    ) -> None:
        super().__init__(description, status=status, code=code)
        self.delegation_status = delegation_status  # what it is now (approved, denied, expired, ...), if known


class InvalidDecisionError(ApiError):
    code = "invalid_decision"
    default_message = "The server refused the signed decision."
    hint = "The companion and the server disagree on the decision statement; report it as a bug."


API_ERRORS: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        InvalidRequestError,
        InvalidSignatureError,
        DeviceRevokedError,
        DeviceExistsError,
        InvalidQrPayloadError,
        PairingNotFoundError,
        PairingExpiredError,
        PairingAlreadyClaimedError,
        PairingClosedError,
        ConnectionNotFoundError,
        DelegationNotFoundError,
        DelegationClosedError,
        InvalidDecisionError,
    )
}


def api_error(status: int, code: str, description: str, *, delegation_status: object = None) -> ApiError:
    """The typed exception for a wire error; unknown codes keep their code on a plain `ApiError`.

    `delegation_status` is the `status` field a `delegation_closed` body carries.
    """
    if code == DelegationClosedError.code:
        reported = delegation_status if isinstance(delegation_status, str) else None
        return DelegationClosedError(description, status=status, code=code, delegation_status=reported)
    cls = API_ERRORS.get(code, ApiError)
    return cls(description, status=status, code=code)


# --- rules files -------------------------------------------------------------------------------------


class RulesError(CompanionError):
    """A rules file that cannot be read or does not follow docs/companion-rules.md."""

    default_message = "The rules file is not valid."
    hint = "See docs/companion-rules.md for the format."


# --- QR codes ------------------------------------------------------------------------------------------


class QrError(CompanionError):
    """The pairing QR could not be read or is not one this companion may claim."""


class ImageSourceError(QrError):
    default_message = "Could not read the image."


class NotAnImageError(QrError):
    default_message = "That is not an image this companion can read (PNG, JPEG, ...)."


class NoQrCodeFoundError(QrError):
    default_message = "No QR code was found in the image."
    hint = "Use a sharper or larger picture of the pairing QR."


class NotAPairingQrError(QrError):
    default_message = "This QR code is not a Vouchsim pairing QR."


class IssuerMismatchError(QrError):
    default_message = "This pairing QR belongs to another server."

    def __init__(self, qr_issuer: str, expected_issuer: str) -> None:
        super().__init__(
            f"This pairing QR belongs to {qr_issuer}, but this companion is enrolled with {expected_issuer}."
        )
        self.qr_issuer = qr_issuer
        self.expected_issuer = expected_issuer
