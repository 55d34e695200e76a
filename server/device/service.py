"""The trusted device's own records, HTTP-free: enrolment, who it is, the connections it can unpair, and its
revocation, by itself or by the operator (docs/device-api.md, docs/security.md "Lost phone"). Pairings are
`server.pairing.service`'s.
"""

from __future__ import annotations

from vouchsim.server.core.clock import Clock
from vouchsim.server.core.crypto import new_id
from vouchsim.server.core.text import display_text_problem
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.device.auth import fingerprint
from vouchsim.server.device.errors import ConnectionNotFound, DeviceExists, DeviceNotFound, InvalidRequest
from vouchsim.server.device.schemas import (
    MAX_NAME_LENGTH,
    ConnectionList,
    ConnectionView,
    DeviceInfo,
    DeviceRevocation,
    DeviceSummary,
)
from vouchsim.server.pairing.identity import client_identity
from vouchsim.server.storage.models import Device, OAuthClient, RuntimeConnection
from vouchsim.server.storage.repositories.connections import ConnectionRepository
from vouchsim.server.storage.repositories.devices import DeviceRepository


def checked_name(name: str) -> str:
    """A device name as shown to people: trimmed, 1 to 64 characters, no control or bidi formatting characters
    (the same rule as client names, `server.core.text`)."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise InvalidRequest(f"name must be 1 to {MAX_NAME_LENGTH} characters.")
    if problem := display_text_problem("name", name, MAX_NAME_LENGTH):
        raise InvalidRequest(problem + ".")
    return name


class DeviceService:
    def __init__(self, devices: DeviceRepository, connections: ConnectionRepository, clock: Clock) -> None:
        self.devices = devices
        self.connections = connections
        self.clock = clock

    async def enrol(self, public_key: str, name: str, issuer: str) -> DeviceInfo:
        """A new user whose trusted device holds `public_key` (already checked, signature included)."""
        if await self.devices.find_by_public_key(public_key) is not None:
            raise DeviceExists()
        device = await self.devices.enrol(
            user_id=new_id("usr"),
            device_id=new_id("dev"),
            public_key=public_key,
            name=checked_name(name),
            now=self.clock.now(),
        )
        if device is None:  # a concurrent enrolment of the same key won
            raise DeviceExists()
        return _device_info(device, issuer)

    async def me(self, device_id: str, issuer: str) -> DeviceInfo:
        device = await self.devices.get(device_id)
        assert device is not None  # the caller authenticated as this device
        return _device_info(device, issuer)

    async def connections_of(self, user_id: str) -> ConnectionList:
        rows = await self.connections.list_with_clients(user_id)
        return ConnectionList(connections=[_connection_view(row, client) for row, client in rows])

    async def revoke_connection(self, user_id: str, connection_id: str) -> ConnectionView:
        """Unpair a connection of this user (idempotent); its tokens stop working in the same transaction."""
        row = await self.connections.get(connection_id)
        if row is None or row.user_id != user_id:
            raise ConnectionNotFound()
        await self.connections.revoke(connection_id, self.clock.now())
        row = await self.connections.get(connection_id)
        client = await self.connections.client_of(connection_id)
        assert row is not None
        assert client is not None
        return _connection_view(row, client)

    async def revoke_device(
        self, device_id: str, *, cut_connections: bool, delegations: DelegationService
    ) -> DeviceRevocation:
        """Stop trusting a device (a lost phone), in this transaction: its key is refused from now on, on every
        instance, and its open event streams close when this commits. `cut_connections`: also unpair every
        connection it paired (their tokens stop working); otherwise they survive. When its user has no trusted
        device left, their pending delegations are denied (nobody could decide them) and waiting agents are
        answered. Idempotent: the first revocation time stands. `delegations` must run in the same transaction."""
        device = await self.devices.get(device_id)
        if device is None:
            raise DeviceNotFound(f"No device is called {device_id!r}.")
        now = self.clock.now()
        await self.devices.revoke(device_id, now)
        cut = []
        if cut_connections:
            for connection_id in await self.connections.live_of_device(device_id):
                if await self.connections.revoke(connection_id, now):
                    cut.append(connection_id)
        denied = []
        if not await self.devices.user_has_trusted_device(device.user_id):
            denied = await delegations.deny_without_device(device.user_id)
        device = await self.devices.get(device_id)
        assert device is not None and device.revoked_at is not None
        return DeviceRevocation(
            device_id=device.id,
            name=device.name,
            fingerprint=fingerprint(device.public_key),
            revoked_at=device.revoked_at,
            connections_cut=cut,
            delegations_denied=denied,
        )

    async def list_devices(self) -> list[DeviceSummary]:
        """Every device, newest first (the operator's `vouchsim devices list`)."""
        return [
            DeviceSummary(
                device_id=device.id,
                name=device.name,
                fingerprint=fingerprint(device.public_key),
                enrolled_at=device.created_at,
                last_seen_at=device.last_seen_at,
                revoked_at=device.revoked_at,
                live_connections=live,
            )
            for device, live in await self.devices.list_all()
        ]


def _device_info(device: Device, issuer: str) -> DeviceInfo:
    return DeviceInfo(
        device_id=device.id,
        user_id=device.user_id,
        name=device.name,
        fingerprint=fingerprint(device.public_key),
        issuer=issuer,
        enrolled_at=device.created_at,
    )


def _connection_view(row: RuntimeConnection, client: OAuthClient) -> ConnectionView:
    return ConnectionView(
        connection_id=row.id,
        client_id=row.client_id,
        client_name=client.client_name or client.client_id,
        verified_host=client_identity(client).verified_host,
        scopes=list(dict.fromkeys(row.scope.split())),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )
