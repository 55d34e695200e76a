"""The pairing flow, HTTP-free: the authorization page starts it and takes the code, the device claims it
and approves or declines (docs/device-api.md; the state machine is `server.pairing.states`).

Secrets are never stored: the QR secret is derived from the browser's cookie secret (`qr.derive_secret`) and
kept as SHA-256; the pairing code is kept as an HMAC under the server key (`codes`). Every state change is a
compare-and-swap; a caller that loses a race gets the error that describes the state it lost to.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from vouchsim.server.core.browser_urls import display_host
from vouchsim.server.core.clock import Clock
from vouchsim.server.core.crypto import constant_time_equals, hash_secret, new_id
from vouchsim.server.pairing import codes, qr
from vouchsim.server.pairing.errors import (
    MalformedPairingCode,
    PairingAlreadyClaimed,
    PairingBurnt,
    PairingClosed,
    PairingCodeExpired,
    PairingConflict,
    PairingDeclined,
    PairingExpired,
    PairingNotApproved,
    PairingNotFound,
    WrongPairingCode,
)
from vouchsim.server.pairing.identity import client_identity
from vouchsim.server.pairing.states import FINAL, OPEN, PairingEvent, PairingStatus, next_status, sources
from vouchsim.server.settings import Settings
from vouchsim.server.storage.repositories.pairings import PairingBundle, PairingRepository


class StartedPairing(msgspec.Struct, frozen=True, kw_only=True):
    pairing_id: str
    qr_payload: str
    expires_at: datetime


class PairingView(msgspec.Struct, frozen=True, kw_only=True):
    """What the authorization page shows about its pairing."""

    pairing_id: str
    authorization_request_id: str
    status: PairingStatus
    expires_at: datetime
    device_name: str | None
    attempts_left: int
    code_expires_at: datetime | None


class CompletedPairing(msgspec.Struct, frozen=True, kw_only=True):
    pairing_id: str
    authorization_request_id: str
    user_id: str
    device_id: str


class PairingContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the device shows before the person agrees (`POST /device/pairings/claim`)."""

    pairing_id: str
    status: PairingStatus
    client_id: str
    client_name: str
    redirect_host: str
    scopes: list[str]
    requested_at: datetime
    expires_at: datetime
    issuer: str
    # The client_id host of a client described by a metadata document, the one verified fact about it; None for
    # registered and pre-registered clients (pairing.identity).
    verified_host: str | None = None
    # Set when every redirect URI of that client is on loopback: warn the person (pairing.identity).
    localhost_only: bool = False


class IssuedCode(msgspec.Struct, frozen=True, kw_only=True):
    pairing_id: str
    status: PairingStatus
    pairing_code: str
    code_expires_at: datetime


class DeclinedPairing(msgspec.Struct, frozen=True, kw_only=True):
    pairing_id: str
    status: PairingStatus


class PairingService:
    def __init__(self, pairings: PairingRepository, clock: Clock, settings: Settings, hmac_key: bytes) -> None:
        self.pairings = pairings
        self.clock = clock
        self.settings = settings
        self.hmac_key = hmac_key

    # -- the authorization page ----------------------------------------------------------------------------

    async def start(self, authorization_request_id: str, browser_secret: str, issuer: str) -> StartedPairing:
        now = self.clock.now()
        pairing_id = new_id("pair")
        secret = qr.derive_secret(browser_secret, pairing_id)
        expires_at = now + timedelta(seconds=self.settings.pairing_ttl)
        await self.pairings.add(
            pairing_id=pairing_id,
            authorization_request_id=authorization_request_id,
            secret_hash=hash_secret(secret),
            status=PairingStatus.WAITING,
            now=now,
            expires_at=expires_at,
        )
        return StartedPairing(pairing_id=pairing_id, qr_payload=qr.pairing_uri(issuer, secret), expires_at=expires_at)

    async def qr_payload(self, pairing_id: str, browser_session_id: str, browser_secret: str, issuer: str) -> str:
        """The QR text again, for the browser that started the pairing while it is still open."""
        bundle = await self._for_browser(pairing_id, browser_session_id)
        secret = qr.derive_secret(browser_secret, pairing_id)
        if not constant_time_equals(hash_secret(secret), bundle.pairing.secret_hash):
            raise PairingNotFound()
        _refuse_final_for_browser(PairingStatus(bundle.pairing.status))
        return qr.pairing_uri(issuer, secret)

    async def view(self, pairing_id: str, browser_session_id: str) -> PairingView:
        bundle = await self._for_browser(pairing_id, browser_session_id)
        pairing = bundle.pairing
        status = PairingStatus(pairing.status)
        return PairingView(
            pairing_id=pairing.id,
            authorization_request_id=pairing.authorization_request_id,
            status=status,
            expires_at=pairing.expires_at,
            device_name=bundle.device.name if bundle.device else None,
            attempts_left=self._attempts_left(pairing.failed_attempts),
            code_expires_at=pairing.code_expires_at if status is PairingStatus.APPROVED else None,
        )

    async def submit_code(self, pairing_id: str, browser_session_id: str, code_text: str) -> CompletedPairing:
        """Check the code the person typed. A counted attempt is recorded before any error is raised, so the
        caller must commit on these errors too (answer with a page, not an exception that rolls back).
        """
        bundle = await self._for_browser(pairing_id, browser_session_id)
        _refuse_final_for_browser(PairingStatus(bundle.pairing.status))
        code = codes.normalise(code_text)
        if code is None:
            # Malformed input carries no guess, so it costs no attempt.
            raise MalformedPairingCode(self._attempts_left(bundle.pairing.failed_attempts))
        # Count first, check second: however many requests race, at most N codes are ever compared. A code that has
        # expired is compared with nothing, so it costs no attempt (the device approves again for a new one).
        now = self.clock.now()
        reserved = await self.pairings.reserve_attempt(
            pairing_id, status_in=OPEN, max_attempts=self.settings.pairing_max_attempts, now=now
        )
        if reserved is None:
            raise await self._not_reserved(pairing_id, now)
        left = self._attempts_left(reserved.failed_attempts)
        status = PairingStatus(reserved.status)
        if status is not PairingStatus.APPROVED or reserved.code_hash is None or reserved.code_expires_at is None:
            raise await self._failed_attempt(pairing_id, PairingNotApproved(left))
        if not codes.matches(self.hmac_key, pairing_id, code, reserved.code_hash):
            raise await self._failed_attempt(pairing_id, WrongPairingCode(left))
        completed = await self.pairings.update_if(
            pairing_id,
            status_in=sources(PairingEvent.CODE_OK),
            code_hash=reserved.code_hash,  # approving again voids this code, even mid-request
            changes={"status": PairingStatus.COMPLETED, "closed_at": now},
        )
        bundle = await self._load(pairing_id)
        if not completed:
            _refuse_final_for_browser(PairingStatus(bundle.pairing.status))
            raise await self._failed_attempt(pairing_id, WrongPairingCode(left))  # re-approved meanwhile
        device = bundle.device
        assert device is not None  # approved implies claimed
        return CompletedPairing(
            pairing_id=pairing_id,
            authorization_request_id=bundle.pairing.authorization_request_id,
            user_id=device.user_id,
            device_id=device.id,
        )

    # -- the trusted device --------------------------------------------------------------------------------

    async def claim(self, device_id: str, qr_payload: str, issuer: str) -> PairingContext:
        """Claim the pairing behind a scanned QR; the same device claiming again gets the same context."""
        secret = qr.parse_pairing_uri(qr_payload, issuer)
        found = await self.pairings.bundle_by_secret_hash(hash_secret(secret))
        if found is None:
            raise PairingNotFound("No pairing matches this QR code.")
        bundle = await self._expire_if_due(found)
        if PairingStatus(bundle.pairing.status) is PairingStatus.WAITING:
            await self.pairings.update_if(
                bundle.pairing.id,
                status_in=sources(PairingEvent.CLAIM),
                changes={
                    "status": PairingStatus.CLAIMED,
                    "device_id": device_id,
                    "claimed_at": self.clock.now(),
                },
            )
            # Won or lost, the row now says who holds it.
            bundle = await self._load(bundle.pairing.id)
        return self._context(bundle, device_id, issuer)

    async def approve(self, device_id: str, pairing_id: str) -> IssuedCode:
        """Issue a pairing code to type on the page; approving again issues a new one and voids the old."""
        bundle = await self._for_device(pairing_id, device_id)
        pairing = bundle.pairing
        status = _open_for_device(PairingStatus(pairing.status))
        target = next_status(status, PairingEvent.APPROVE)
        if target is None:
            raise PairingConflict()
        now = self.clock.now()
        code = codes.generate()
        code_expires_at = min(now + timedelta(seconds=self.settings.pairing_code_ttl), pairing.expires_at)
        won = await self.pairings.update_if(
            pairing_id,
            status_in=[status],
            device_id=device_id,
            code_hash=pairing.code_hash,  # a racing approval or decline changes it: exactly one wins
            changes={
                "status": target,
                "code_hash": codes.code_hash(self.hmac_key, pairing_id, code),
                "code_expires_at": code_expires_at,
                "approved_at": now,
            },
        )
        if not won:
            raise await self._lost_device_race(pairing_id, device_id)
        return IssuedCode(
            pairing_id=pairing_id,
            status=target,
            pairing_code=codes.display(code),
            code_expires_at=code_expires_at,
        )

    async def decline(self, device_id: str, pairing_id: str) -> DeclinedPairing:
        """Refuse the pairing; declining again is a no-op that answers the same."""
        bundle = await self._for_device(pairing_id, device_id)
        pairing = bundle.pairing
        declined = DeclinedPairing(pairing_id=pairing_id, status=PairingStatus.DECLINED)
        if PairingStatus(pairing.status) is PairingStatus.DECLINED:
            return declined
        status = _open_for_device(PairingStatus(pairing.status))
        target = next_status(status, PairingEvent.DECLINE)
        if target is None:
            raise PairingConflict()
        won = await self.pairings.update_if(
            pairing_id,
            status_in=[status],
            device_id=device_id,
            code_hash=pairing.code_hash,
            changes={"status": target, "closed_at": self.clock.now()},
        )
        if not won:
            raise await self._lost_device_race(pairing_id, device_id)
        return declined

    # -- loading, expiry and failures ----------------------------------------------------------------------

    async def _load(self, pairing_id: str) -> PairingBundle:
        found = await self.pairings.bundle(pairing_id)
        if found is None:
            raise PairingNotFound()
        return await self._expire_if_due(found)

    async def _expire_if_due(self, bundle: PairingBundle) -> PairingBundle:
        """Every read first moves an open pairing past its deadline to `expired`."""
        pairing = bundle.pairing
        now = self.clock.now()
        # Checked here first so that reads of live pairings never write (nor take SQLite's write lock).
        if PairingStatus(pairing.status) not in OPEN or now < pairing.expires_at:
            return bundle
        await self.pairings.update_if(
            pairing.id,
            status_in=sources(PairingEvent.TIME),
            due_by=now,
            changes={"status": PairingStatus.EXPIRED, "closed_at": now},
        )
        found = await self.pairings.bundle(pairing.id)
        assert found is not None
        return found

    async def _for_browser(self, pairing_id: str, browser_session_id: str) -> PairingBundle:
        bundle = await self._load(pairing_id)
        if bundle.request.browser_session_id != browser_session_id:
            raise PairingNotFound()
        return bundle

    async def _for_device(self, pairing_id: str, device_id: str) -> PairingBundle:
        bundle = await self._load(pairing_id)
        # A pairing this device has not claimed is none of its business, whoever holds it.
        if bundle.pairing.device_id != device_id:
            raise PairingNotFound()
        return bundle

    def _context(self, bundle: PairingBundle, device_id: str, issuer: str) -> PairingContext:
        pairing, request, client = bundle.pairing, bundle.request, bundle.client
        status = PairingStatus(pairing.status)
        if status is PairingStatus.EXPIRED:
            raise PairingExpired()
        if status in FINAL:
            raise PairingClosed()
        if pairing.device_id != device_id:
            raise PairingAlreadyClaimed()
        identity = client_identity(client)
        return PairingContext(
            pairing_id=pairing.id,
            status=status,
            client_id=client.client_id,
            client_name=client.client_name or client.client_id,
            # The host a browser would go to, international names in punycode (docs/security.md).
            redirect_host=display_host(request.redirect_uri),
            scopes=list(dict.fromkeys(request.scope.split())),
            requested_at=request.created_at,
            expires_at=pairing.expires_at,
            issuer=issuer,
            verified_host=identity.verified_host,
            localhost_only=identity.localhost_only,
        )

    def _attempts_left(self, failed_attempts: int) -> int:
        return max(0, self.settings.pairing_max_attempts - failed_attempts)

    async def _failed_attempt(self, pairing_id: str, error: PairingNotApproved | WrongPairingCode) -> Exception:
        """The error for a counted attempt that did not complete; the last allowed one burns the pairing."""
        if error.attempts_left > 0:
            return error
        return await self._burn(pairing_id)

    async def _not_reserved(self, pairing_id: str, now: datetime) -> Exception:
        """Why no attempt could be counted: the code expired (no attempt spent), or none are left, or it is closed."""
        bundle = await self._load(pairing_id)
        pairing = bundle.pairing
        status = PairingStatus(pairing.status)
        expired = pairing.code_expires_at is not None and now >= pairing.code_expires_at
        if (
            status is PairingStatus.APPROVED
            and expired
            and pairing.failed_attempts < self.settings.pairing_max_attempts
        ):
            return PairingCodeExpired(self._attempts_left(pairing.failed_attempts))
        if status in OPEN:
            return await self._burn(pairing_id)  # attempts used up, e.g. the limit was lowered
        return _final_for_browser(status)

    async def _burn(self, pairing_id: str) -> Exception:
        now = self.clock.now()
        burnt = await self.pairings.update_if(
            pairing_id,
            status_in=sources(PairingEvent.LAST_WRONG_CODE),
            changes={"status": PairingStatus.BURNT, "closed_at": now},
        )
        if burnt:
            return PairingBurnt()
        bundle = await self._load(pairing_id)
        return _final_for_browser(PairingStatus(bundle.pairing.status))

    async def _lost_device_race(self, pairing_id: str, device_id: str) -> Exception:
        bundle = await self._for_device(pairing_id, device_id)
        status = PairingStatus(bundle.pairing.status)
        if status is PairingStatus.EXPIRED:
            return PairingExpired()
        if status in FINAL:
            return PairingClosed()
        return PairingConflict()


def _open_for_device(status: PairingStatus) -> PairingStatus:
    if status is PairingStatus.EXPIRED:
        raise PairingExpired()
    if status in FINAL:
        raise PairingClosed()
    return status


def _final_for_browser(status: PairingStatus) -> Exception:
    errors: dict[PairingStatus, Exception] = {
        PairingStatus.EXPIRED: PairingExpired(),
        PairingStatus.DECLINED: PairingDeclined(),
        PairingStatus.BURNT: PairingBurnt(),
        PairingStatus.COMPLETED: PairingClosed("This pairing is already complete."),
    }
    return errors.get(status, PairingConflict())


def _refuse_final_for_browser(status: PairingStatus) -> None:
    if status in FINAL:
        raise _final_for_browser(status)
