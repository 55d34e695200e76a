"""Users and their trusted devices (docs/device-api.md), and the nonces of signed device requests."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.storage import topics
from vouchsim.server.storage.events import announce
from vouchsim.server.storage.models import Device, DeviceNonce, RuntimeConnection, User
from vouchsim.server.storage.repositories import dialect_insert


class DeviceSigner(NamedTuple):
    """What checking a signed device request needs of its device, read without the ORM (every device request)."""

    id: str
    user_id: str
    public_key: str
    last_seen_at: datetime | None
    revoked_at: datetime | None


class RequestNonce(NamedTuple):
    """A signed request's nonce, to be remembered until `expires_at` (`DeviceRepository.remember_nonce`)."""

    device_id: str
    nonce: str
    expires_at: datetime


_DEVICES = cast(Table, Device.__table__)
NONCES = cast(Table, DeviceNonce.__table__)
# `DeviceSigner`'s columns, in its order (the decision's read selects them too: `DelegationRepository.for_decision`)
SIGNER_COLUMNS = (
    _DEVICES.c.id,
    _DEVICES.c.user_id,
    _DEVICES.c.public_key,
    _DEVICES.c.last_seen_at,
    _DEVICES.c.revoked_at,
)
_SIGNER = select(*SIGNER_COLUMNS).where(_DEVICES.c.id == bindparam("device_id"))


class DeviceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, device_id: str) -> Device | None:
        return await self.session.get(Device, device_id, populate_existing=True)

    async def signer(self, device_id: str) -> DeviceSigner | None:
        found = (await self.session.execute(_SIGNER, {"device_id": device_id})).first()
        return DeviceSigner(*found) if found is not None else None

    async def is_active(self, device_id: str) -> bool:
        found = await self.session.scalar(select(Device.id).where(Device.id == device_id, Device.revoked_at.is_(None)))
        return found is not None

    async def user_has_trusted_device(self, user_id: str) -> bool:
        found = await self.session.scalar(
            select(Device.id).where(Device.user_id == user_id, Device.revoked_at.is_(None)).limit(1)
        )
        return found is not None

    async def list_all(self) -> list[tuple[Device, int]]:
        """Every device, newest first, with how many live connections it paired (the operator's list)."""
        live = (
            select(func.count(RuntimeConnection.id))
            .where(RuntimeConnection.device_id == Device.id, RuntimeConnection.revoked_at.is_(None))
            .scalar_subquery()
        )
        rows = await self.session.execute(select(Device, live).order_by(Device.created_at.desc(), Device.id.desc()))
        return [(device, int(count)) for device, count in rows]

    async def revoke(self, device_id: str, now: datetime) -> bool:
        """Stop trusting the device: its key is refused from this transaction on (idempotent: the first
        revocation time stands). True only when this call revoked it. Its open event streams, on every instance,
        hear `revoked:device:<id>` at commit and close."""
        result = await self.session.execute(
            update(Device)
            .where(Device.id == device_id, Device.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        await announce(self.session, topics.revoked_device(device_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def find_by_public_key(self, public_key: str) -> Device | None:
        return await self.session.scalar(select(Device).where(Device.public_key == public_key))

    async def enrol(self, *, user_id: str, device_id: str, public_key: str, name: str, now: datetime) -> Device | None:
        """A new user with this device as its trusted device; None when the key is already enrolled.

        The device insert ignores a unique-key conflict instead of failing, so a racing enrolment of the
        same key neither aborts the transaction nor leaves the new user behind.
        """
        self.session.add(User(id=user_id, created_at=now))
        await self.session.flush()
        inserted = await self._insert_ignoring_conflict(
            Device,
            ["public_key"],
            id=device_id,
            user_id=user_id,
            public_key=public_key,
            name=name,
            created_at=now,
        )
        if not inserted:
            await self.session.execute(delete(User).where(User.id == user_id))
            return None
        return await self.get(device_id)

    async def touch(self, device_id: str, now: datetime) -> None:
        await self.session.execute(
            update(Device)
            .where(Device.id == device_id)
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )

    async def remember_nonce(self, device_id: str, nonce: str, expires_at: datetime) -> bool:
        """Record a nonce; False when this device already used it (the primary key is the replay check)."""
        statement = remember_nonce_statement(self.session.get_bind().dialect.name)
        result = await self.session.execute(
            statement, {"device_id": device_id, "nonce": nonce, "expires_at": expires_at}
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def prune_nonces(self, now: datetime) -> int:
        """Forget nonces whose timestamp can no longer pass the clock-skew window anyway."""
        result = await self.session.execute(
            delete(DeviceNonce).where(DeviceNonce.expires_at < now).execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def _insert_ignoring_conflict(
        self, model: type[Device] | type[DeviceNonce], conflict_on: list[str], **values: Any
    ) -> bool:
        # ON CONFLICT DO NOTHING, spelled per dialect: a failed INSERT would abort a PostgreSQL transaction,
        # and SAVEPOINTs are unreliable on pysqlite-style drivers.
        dialect = self.session.get_bind().dialect.name
        # The table, not the mapped class: a Core INSERT skips the ORM's bulk-insert path (a nonce per request).
        table = cast(Table, model.__table__)
        statement = dialect_insert(dialect, table).values(**values).on_conflict_do_nothing(index_elements=conflict_on)
        result = await self.session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]


@cache
def remember_nonce_statement(dialect: str, prefix: str = "") -> Any:
    """`remember_nonce`'s INSERT … ON CONFLICT DO NOTHING, built once per dialect (one per signed request); its
    parameters are `device_id`, `nonce` and `expires_at`, each after `prefix` (a statement that embeds it)."""
    values: dict[str, Any] = {
        name: bindparam(prefix + name, type_=NONCES.c[name].type) for name in ("device_id", "nonce", "expires_at")
    }
    return (
        dialect_insert(dialect, NONCES).values(**values).on_conflict_do_nothing(index_elements=["device_id", "nonce"])
    )
