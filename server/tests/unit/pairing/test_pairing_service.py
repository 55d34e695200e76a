"""PairingService against a real SQLite database (migrations applied) and a frozen clock: every edge of
the state machine from both sides, the attempt limit, and the two deadlines."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from server.tests.pairing_support import (
    BROWSER_SECRET,
    ISSUER,
    SeededDevice,
    SeededRequest,
    pairing_service,
    seed_device,
    seed_request,
)
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.core.crypto import hash_secret
from vouchsim.server.pairing import qr
from vouchsim.server.pairing.errors import (
    InvalidQrPayload,
    MalformedPairingCode,
    PairingAlreadyClaimed,
    PairingBurnt,
    PairingClosed,
    PairingCodeExpired,
    PairingDeclined,
    PairingExpired,
    PairingNotApproved,
    PairingNotFound,
    WrongPairingCode,
)
from vouchsim.server.pairing.service import PairingService, StartedPairing
from vouchsim.server.pairing.states import PairingStatus
from vouchsim.server.settings import Settings
from vouchsim.server.storage.models import PairingSession

pytestmark = pytest.mark.anyio


@pytest.fixture
def service(db: AsyncSession, clock: FrozenClock, settings: Settings) -> PairingService:
    return pairing_service(db, clock, settings)


@pytest.fixture
async def request_row(db: AsyncSession, clock: FrozenClock) -> SeededRequest:
    return await seed_request(db, clock)


@pytest.fixture
async def phone(db: AsyncSession, clock: FrozenClock) -> SeededDevice:
    return await seed_device(db, clock, "Pixel of QA")


@pytest.fixture
async def other_phone(db: AsyncSession, clock: FrozenClock) -> SeededDevice:
    return await seed_device(db, clock, "Someone else's phone")


@pytest.fixture
async def started(service: PairingService, request_row: SeededRequest) -> StartedPairing:
    return await service.start(request_row.request_id, BROWSER_SECRET, ISSUER)


async def row_of(db: AsyncSession, pairing_id: str) -> PairingSession:
    row = await db.scalar(
        select(PairingSession).where(PairingSession.id == pairing_id).execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def approved_code(service: PairingService, started: StartedPairing, phone: SeededDevice) -> str:
    await service.claim(phone.device_id, started.qr_payload, ISSUER)
    return (await service.approve(phone.device_id, started.pairing_id)).pairing_code


# -- start and the QR ----------------------------------------------------------------------------------------


async def test_start_stores_only_a_hash_of_the_derived_secret(
    db: AsyncSession, clock: FrozenClock, started: StartedPairing, request_row: SeededRequest
) -> None:
    secret = qr.parse_pairing_uri(started.qr_payload, ISSUER)
    assert secret == qr.derive_secret(BROWSER_SECRET, started.pairing_id)
    row = await row_of(db, started.pairing_id)
    assert row.secret_hash == hash_secret(secret)
    assert secret not in {row.secret_hash, row.code_hash}
    assert row.status == "waiting"
    assert row.authorization_request_id == request_row.request_id
    assert started.pairing_id.startswith("pair_")
    assert started.expires_at == row.expires_at == clock.now() + timedelta(seconds=300)


async def test_the_starting_browser_can_draw_the_qr_again(
    service: PairingService, started: StartedPairing, request_row: SeededRequest
) -> None:
    payload = await service.qr_payload(started.pairing_id, request_row.browser_session_id, BROWSER_SECRET, ISSUER)
    assert payload == started.qr_payload


async def test_no_other_browser_gets_the_qr(
    service: PairingService, started: StartedPairing, request_row: SeededRequest
) -> None:
    with pytest.raises(PairingNotFound):
        await service.qr_payload(started.pairing_id, "brw_other", BROWSER_SECRET, ISSUER)
    with pytest.raises(PairingNotFound):
        await service.qr_payload(started.pairing_id, request_row.browser_session_id, "stolen id, wrong secret", ISSUER)
    with pytest.raises(PairingNotFound):
        await service.qr_payload("pair_unknown", request_row.browser_session_id, BROWSER_SECRET, ISSUER)


async def test_no_qr_for_an_expired_pairing(
    service: PairingService, clock: FrozenClock, started: StartedPairing, request_row: SeededRequest
) -> None:
    clock.advance(300)
    with pytest.raises(PairingExpired):
        await service.qr_payload(started.pairing_id, request_row.browser_session_id, BROWSER_SECRET, ISSUER)


# -- view ----------------------------------------------------------------------------------------------------


async def test_view_follows_the_pairing(
    service: PairingService,
    clock: FrozenClock,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
) -> None:
    browser = request_row.browser_session_id
    view = await service.view(started.pairing_id, browser)
    assert (view.status, view.device_name, view.attempts_left, view.code_expires_at) == (
        PairingStatus.WAITING,
        None,
        5,
        None,
    )
    assert view.authorization_request_id == request_row.request_id
    assert view.expires_at == started.expires_at

    await service.claim(phone.device_id, started.qr_payload, ISSUER)
    view = await service.view(started.pairing_id, browser)
    assert (view.status, view.device_name) == (PairingStatus.CLAIMED, "Pixel of QA")

    issued = await service.approve(phone.device_id, started.pairing_id)
    view = await service.view(started.pairing_id, browser)
    assert view.status is PairingStatus.APPROVED
    assert view.code_expires_at == issued.code_expires_at == clock.now() + timedelta(seconds=180)

    with pytest.raises(WrongPairingCode):
        await service.submit_code(started.pairing_id, browser, "BBBB-BBBB")
    assert (await service.view(started.pairing_id, browser)).attempts_left == 4


async def test_view_is_only_for_the_starting_browser(service: PairingService, started: StartedPairing) -> None:
    with pytest.raises(PairingNotFound):
        await service.view(started.pairing_id, "brw_other")


# -- claim ---------------------------------------------------------------------------------------------------


async def test_claim_returns_what_to_show_the_person(
    db: AsyncSession,
    clock: FrozenClock,
    service: PairingService,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
) -> None:
    context = await service.claim(phone.device_id, started.qr_payload, ISSUER + "/")
    assert context.pairing_id == started.pairing_id
    assert context.status is PairingStatus.CLAIMED
    assert context.client_id == request_row.client_id
    assert context.client_name == "Acme Agent Client"
    assert context.redirect_host == "127.0.0.1"
    assert context.scopes == ["identity", "delegation"]
    assert context.requested_at == clock.now()
    assert context.expires_at == started.expires_at
    assert context.issuer == ISSUER + "/"
    row = await row_of(db, started.pairing_id)
    assert (row.status, row.device_id, row.claimed_at) == ("claimed", phone.device_id, clock.now())


async def test_claiming_again_from_the_same_device_returns_the_same_context(
    service: PairingService, started: StartedPairing, phone: SeededDevice
) -> None:
    first = await service.claim(phone.device_id, started.qr_payload, ISSUER)
    assert await service.claim(phone.device_id, started.qr_payload, ISSUER) == first
    await service.approve(phone.device_id, started.pairing_id)
    again = await service.claim(phone.device_id, started.qr_payload, ISSUER)
    assert again.status is PairingStatus.APPROVED


async def test_another_device_cannot_claim_a_claimed_pairing(
    service: PairingService, started: StartedPairing, phone: SeededDevice, other_phone: SeededDevice
) -> None:
    await service.claim(phone.device_id, started.qr_payload, ISSUER)
    with pytest.raises(PairingAlreadyClaimed) as caught:
        await service.claim(other_phone.device_id, started.qr_payload, ISSUER)
    assert (caught.value.code, caught.value.status) == ("pairing_already_claimed", 409)


async def test_claim_of_an_unknown_secret(
    service: PairingService, started: StartedPairing, phone: SeededDevice
) -> None:
    forged = qr.pairing_uri(ISSUER, qr.derive_secret("another browser", started.pairing_id))
    with pytest.raises(PairingNotFound) as caught:
        await service.claim(phone.device_id, forged, ISSUER)
    assert (caught.value.code, caught.value.status) == ("pairing_not_found", 404)


async def test_claim_refuses_a_qr_of_another_server(
    service: PairingService, started: StartedPairing, phone: SeededDevice
) -> None:
    with pytest.raises(InvalidQrPayload):
        await service.claim(phone.device_id, started.qr_payload, "https://other.example")
    with pytest.raises(InvalidQrPayload):
        await service.claim(phone.device_id, "https://vouch.test/oauth/authorize", ISSUER)


async def test_claim_of_an_expired_pairing_expires_it(
    db: AsyncSession,
    clock: FrozenClock,
    service: PairingService,
    started: StartedPairing,
    phone: SeededDevice,
) -> None:
    clock.advance(299)
    await service.claim(phone.device_id, started.qr_payload, ISSUER)
    clock.advance(1)
    with pytest.raises(PairingExpired) as caught:
        await service.claim(phone.device_id, started.qr_payload, ISSUER)
    assert (caught.value.code, caught.value.status) == ("pairing_expired", 410)
    row = await row_of(db, started.pairing_id)
    assert (row.status, row.closed_at) == ("expired", clock.now())


async def test_claim_of_a_finished_pairing_is_closed(
    service: PairingService, started: StartedPairing, phone: SeededDevice, other_phone: SeededDevice
) -> None:
    await service.claim(phone.device_id, started.qr_payload, ISSUER)
    await service.decline(phone.device_id, started.pairing_id)
    for device in (phone, other_phone):
        with pytest.raises(PairingClosed) as caught:
            await service.claim(device.device_id, started.qr_payload, ISSUER)
        assert (caught.value.code, caught.value.status) == ("pairing_closed", 409)


@pytest.mark.parametrize(
    ("client_name", "redirect_uri", "name", "host"),
    [
        (None, "http://127.0.0.1:5555/cb", "client-id", "127.0.0.1"),
        (
            "Cursor",
            "cursor://anysphere.cursor-retrieval/oauth/callback",
            "Cursor",
            "cursor://anysphere.cursor-retrieval",
        ),
        ("Native", "com.example.app:/oauth2redirect", "Native", "com.example.app:"),
        ("IPv6", "http://[::1]:4000/cb", "IPv6", "[::1]"),  # as a browser's URL.hostname
        ("IDN", "https://\u0435vil.example/cb", "IDN", "xn--vil-qdd.example"),  # Cyrillic ie: punycode
    ],
)
async def test_context_names_the_client_and_the_redirect_host(
    db: AsyncSession,
    clock: FrozenClock,
    service: PairingService,
    phone: SeededDevice,
    client_name: str | None,
    redirect_uri: str,
    name: str,
    host: str,
) -> None:
    seeded = await seed_request(db, clock, client_name=client_name, redirect_uri=redirect_uri, scope="identity")
    started = await service.start(seeded.request_id, BROWSER_SECRET, ISSUER)
    context = await service.claim(phone.device_id, started.qr_payload, ISSUER)
    assert context.client_name == (seeded.client_id if name == "client-id" else name)
    assert context.redirect_host == host
    assert context.scopes == ["identity"]


# -- approve -------------------------------------------------------------------------------------------------


async def test_approve_issues_a_code_stored_only_as_a_keyed_hash(
    db: AsyncSession,
    clock: FrozenClock,
    service: PairingService,
    started: StartedPairing,
    phone: SeededDevice,
) -> None:
    await service.claim(phone.device_id, started.qr_payload, ISSUER)
    issued = await service.approve(phone.device_id, started.pairing_id)
    assert issued.status is PairingStatus.APPROVED
    assert issued.pairing_id == started.pairing_id
    assert len(issued.pairing_code) == 9
    assert issued.pairing_code[4] == "-"
    row = await row_of(db, started.pairing_id)
    assert row.status == "approved"
    assert row.approved_at == clock.now()
    assert row.code_hash is not None
    assert issued.pairing_code.replace("-", "") not in row.code_hash


async def test_the_code_never_outlives_the_pairing(
    clock: FrozenClock, service: PairingService, started: StartedPairing, phone: SeededDevice
) -> None:
    await service.claim(phone.device_id, started.qr_payload, ISSUER)
    clock.advance(250)
    issued = await service.approve(phone.device_id, started.pairing_id)
    assert issued.code_expires_at == started.expires_at


async def test_approving_again_issues_a_new_code_and_voids_the_old(
    service: PairingService, started: StartedPairing, request_row: SeededRequest, phone: SeededDevice
) -> None:
    old = await approved_code(service, started, phone)
    new = (await service.approve(phone.device_id, started.pairing_id)).pairing_code
    assert new != old
    with pytest.raises(WrongPairingCode):
        await service.submit_code(started.pairing_id, request_row.browser_session_id, old)
    done = await service.submit_code(started.pairing_id, request_row.browser_session_id, new)
    assert done.device_id == phone.device_id


async def test_only_the_claiming_device_may_decide(
    service: PairingService, started: StartedPairing, phone: SeededDevice, other_phone: SeededDevice
) -> None:
    with pytest.raises(PairingNotFound):  # nobody claimed it yet
        await service.approve(phone.device_id, started.pairing_id)
    await service.claim(phone.device_id, started.qr_payload, ISSUER)
    with pytest.raises(PairingNotFound):
        await service.approve(other_phone.device_id, started.pairing_id)
    with pytest.raises(PairingNotFound):
        await service.decline(other_phone.device_id, started.pairing_id)
    with pytest.raises(PairingNotFound):
        await service.approve(phone.device_id, "pair_unknown")


async def test_approve_after_expiry_or_decline(
    clock: FrozenClock, service: PairingService, started: StartedPairing, phone: SeededDevice
) -> None:
    await service.claim(phone.device_id, started.qr_payload, ISSUER)
    await service.decline(phone.device_id, started.pairing_id)
    with pytest.raises(PairingClosed) as closed:
        await service.approve(phone.device_id, started.pairing_id)
    assert closed.value.code == "pairing_closed"
    clock.advance(301)
    with pytest.raises(PairingClosed):  # declined stays declined: only open pairings expire
        await service.approve(phone.device_id, started.pairing_id)


async def test_approve_an_expired_claim(
    clock: FrozenClock, service: PairingService, started: StartedPairing, phone: SeededDevice
) -> None:
    await service.claim(phone.device_id, started.qr_payload, ISSUER)
    clock.advance(300)
    with pytest.raises(PairingExpired):
        await service.approve(phone.device_id, started.pairing_id)


# -- decline -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("after_approval", [False, True])
async def test_decline_tells_the_browser(
    db: AsyncSession,
    service: PairingService,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
    after_approval: bool,
) -> None:
    await service.claim(phone.device_id, started.qr_payload, ISSUER)
    code = (await service.approve(phone.device_id, started.pairing_id)).pairing_code if after_approval else "BCDFGHJK"
    declined = await service.decline(phone.device_id, started.pairing_id)
    assert (declined.pairing_id, declined.status) == (started.pairing_id, PairingStatus.DECLINED)
    assert (await service.view(started.pairing_id, request_row.browser_session_id)).status is PairingStatus.DECLINED
    with pytest.raises(PairingDeclined) as caught:
        await service.submit_code(started.pairing_id, request_row.browser_session_id, code)
    assert isinstance(caught.value, PairingClosed)
    assert (await row_of(db, started.pairing_id)).failed_attempts == 0


async def test_declining_twice_answers_the_same(
    service: PairingService, started: StartedPairing, phone: SeededDevice
) -> None:
    await service.claim(phone.device_id, started.qr_payload, ISSUER)
    first = await service.decline(phone.device_id, started.pairing_id)
    assert await service.decline(phone.device_id, started.pairing_id) == first


async def test_decline_after_completion_is_closed(
    service: PairingService, started: StartedPairing, request_row: SeededRequest, phone: SeededDevice
) -> None:
    code = await approved_code(service, started, phone)
    await service.submit_code(started.pairing_id, request_row.browser_session_id, code)
    with pytest.raises(PairingClosed):
        await service.decline(phone.device_id, started.pairing_id)


# -- the code on the page ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [str.upper, str.lower, lambda code: code.replace("-", " "), lambda code: code.replace("-", "")],
)
async def test_the_right_code_completes_the_pairing(
    db: AsyncSession,
    clock: FrozenClock,
    service: PairingService,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
    spelling: object,
) -> None:
    code = await approved_code(service, started, phone)
    typed = spelling(code)  # type: ignore[operator]
    done = await service.submit_code(started.pairing_id, request_row.browser_session_id, typed)
    assert done.pairing_id == started.pairing_id
    assert done.authorization_request_id == request_row.request_id
    assert (done.user_id, done.device_id) == (phone.user_id, phone.device_id)
    row = await row_of(db, started.pairing_id)
    assert (row.status, row.closed_at) == ("completed", clock.now())
    with pytest.raises(PairingClosed):
        await service.submit_code(started.pairing_id, request_row.browser_session_id, code)


async def test_a_code_from_another_browser_is_refused(
    service: PairingService, started: StartedPairing, phone: SeededDevice
) -> None:
    code = await approved_code(service, started, phone)
    with pytest.raises(PairingNotFound):
        await service.submit_code(started.pairing_id, "brw_attacker", code)


async def test_wrong_codes_count_and_the_fifth_burns(
    db: AsyncSession,
    service: PairingService,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
    other_phone: SeededDevice,
) -> None:
    code = await approved_code(service, started, phone)
    wrong = "BBBB-BBBB" if code != "BBBB-BBBB" else "CCCC-CCCC"
    for left in (4, 3, 2, 1):
        with pytest.raises(WrongPairingCode) as caught:
            await service.submit_code(started.pairing_id, request_row.browser_session_id, wrong)
        assert caught.value.attempts_left == left
        assert (caught.value.code, caught.value.status) == ("wrong_pairing_code", 400)
    with pytest.raises(PairingBurnt) as burnt:
        await service.submit_code(started.pairing_id, request_row.browser_session_id, wrong)
    assert burnt.value.code == "pairing_burnt"
    row = await row_of(db, started.pairing_id)
    assert (row.status, row.failed_attempts) == ("burnt", 5)
    # Burnt is final: the right code, the device and the view all see it.
    with pytest.raises(PairingBurnt):
        await service.submit_code(started.pairing_id, request_row.browser_session_id, code)
    with pytest.raises(PairingClosed):
        await service.approve(phone.device_id, started.pairing_id)
    with pytest.raises(PairingClosed):
        await service.claim(other_phone.device_id, started.qr_payload, ISSUER)
    view = await service.view(started.pairing_id, request_row.browser_session_id)
    assert (view.status, view.attempts_left) == (PairingStatus.BURNT, 0)


async def test_the_right_code_on_the_last_attempt_still_works(
    service: PairingService, started: StartedPairing, request_row: SeededRequest, phone: SeededDevice
) -> None:
    code = await approved_code(service, started, phone)
    wrong = "BBBB-BBBB" if code != "BBBB-BBBB" else "CCCC-CCCC"
    for _ in range(4):
        with pytest.raises(WrongPairingCode):
            await service.submit_code(started.pairing_id, request_row.browser_session_id, wrong)
    done = await service.submit_code(started.pairing_id, request_row.browser_session_id, code)
    assert done.device_id == phone.device_id


@pytest.mark.parametrize("claimed", [False, True])
async def test_codes_typed_before_approval_count_too(
    db: AsyncSession,
    service: PairingService,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
    claimed: bool,
) -> None:
    if claimed:
        await service.claim(phone.device_id, started.qr_payload, ISSUER)
    for left in (4, 3, 2, 1):
        with pytest.raises(PairingNotApproved) as caught:
            await service.submit_code(started.pairing_id, request_row.browser_session_id, "BCDF-GHJK")
        assert caught.value.attempts_left == left
    with pytest.raises(PairingBurnt):
        await service.submit_code(started.pairing_id, request_row.browser_session_id, "BCDF-GHJK")
    assert (await row_of(db, started.pairing_id)).status == "burnt"


async def test_malformed_input_costs_no_attempt(
    db: AsyncSession,
    service: PairingService,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
) -> None:
    await approved_code(service, started, phone)
    for typed in ("", "1234-5678", "BCDF-GHJ", "hello there"):
        with pytest.raises(MalformedPairingCode) as caught:
            await service.submit_code(started.pairing_id, request_row.browser_session_id, typed)
        assert isinstance(caught.value, WrongPairingCode)
        assert caught.value.attempts_left == 5
    assert (await row_of(db, started.pairing_id)).failed_attempts == 0


async def test_the_code_expires_uncounted_and_a_new_approval_brings_a_new_one(
    db: AsyncSession,
    clock: FrozenClock,
    service: PairingService,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
) -> None:
    code = await approved_code(service, started, phone)
    clock.advance(180)
    for _ in range(6):  # more than the attempts there are: an expired code is compared with nothing, costs nothing
        with pytest.raises(PairingCodeExpired) as caught:
            await service.submit_code(started.pairing_id, request_row.browser_session_id, code)
        assert (caught.value.code, caught.value.status, caught.value.attempts_left) == (
            "pairing_code_expired",
            410,
            5,
        )
    assert (await row_of(db, started.pairing_id)).failed_attempts == 0
    fresh = (await service.approve(phone.device_id, started.pairing_id)).pairing_code
    done = await service.submit_code(started.pairing_id, request_row.browser_session_id, fresh)
    assert done.device_id == phone.device_id


async def test_a_code_just_before_its_deadline_works(
    clock: FrozenClock,
    service: PairingService,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
) -> None:
    code = await approved_code(service, started, phone)
    clock.advance(179.999)
    assert (await service.submit_code(started.pairing_id, request_row.browser_session_id, code)).device_id


async def test_an_expired_code_never_burns_the_last_attempt(
    db: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
) -> None:
    service = pairing_service(db, clock, Settings(pairing_max_attempts=1))
    code = await approved_code(service, started, phone)
    clock.advance(180)
    with pytest.raises(PairingCodeExpired) as caught:
        await service.submit_code(started.pairing_id, request_row.browser_session_id, code)
    assert caught.value.attempts_left == 1
    fresh = (await service.approve(phone.device_id, started.pairing_id)).pairing_code
    done = await service.submit_code(started.pairing_id, request_row.browser_session_id, fresh)
    assert done.device_id == phone.device_id


async def test_a_lowered_limit_burns_on_the_next_attempt(
    db: AsyncSession,
    clock: FrozenClock,
    service: PairingService,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
) -> None:
    code = await approved_code(service, started, phone)
    for _ in range(2):
        with pytest.raises(WrongPairingCode):
            await service.submit_code(started.pairing_id, request_row.browser_session_id, "BBBB-BBBC")
    stricter = pairing_service(db, clock, Settings(pairing_max_attempts=2))
    with pytest.raises(PairingBurnt):
        await stricter.submit_code(started.pairing_id, request_row.browser_session_id, code)
    assert (await row_of(db, started.pairing_id)).status == "burnt"


# -- pairing expiry from every open state --------------------------------------------------------------------


@pytest.mark.parametrize("reached", ["waiting", "claimed", "approved"])
async def test_every_open_state_expires(
    db: AsyncSession,
    clock: FrozenClock,
    service: PairingService,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
    reached: str,
) -> None:
    code = "BCDF-GHJK"
    if reached in ("claimed", "approved"):
        await service.claim(phone.device_id, started.qr_payload, ISSUER)
    if reached == "approved":
        code = (await service.approve(phone.device_id, started.pairing_id)).pairing_code
    clock.advance(300)
    with pytest.raises(PairingExpired):
        await service.submit_code(started.pairing_id, request_row.browser_session_id, code)
    row = await row_of(db, started.pairing_id)
    assert (row.status, row.closed_at, row.failed_attempts) == ("expired", clock.now(), 0)
    view = await service.view(started.pairing_id, request_row.browser_session_id)
    assert view.status is PairingStatus.EXPIRED
    assert view.code_expires_at is None


async def test_reads_of_a_live_pairing_do_not_write(
    db: AsyncSession,
    engine: AsyncEngine,
    service: PairingService,
    started: StartedPairing,
    request_row: SeededRequest,
    phone: SeededDevice,
) -> None:
    """Only a due pairing is written on read, so a page poll never takes SQLite's write lock."""
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await service.view(started.pairing_id, request_row.browser_session_id)
        await service.claim(phone.device_id, started.qr_payload, ISSUER)
        await service.claim(phone.device_id, started.qr_payload, ISSUER)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    writes = [statement for statement in statements if not statement.lstrip().upper().startswith("SELECT")]
    assert len(writes) == 1  # the claim itself
