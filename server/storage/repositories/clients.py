"""OAuth clients: registered through RFC 7591, described by a Client ID Metadata Document, or pre-registered."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.storage.models import OAuthClient
from vouchsim.server.storage.repositories import dialect_insert

REGISTERED, CIMD, PREREGISTERED = "registered", "cimd", "preregistered"
# Never changed once written: who first had this id, and when.
_KEPT_ON_REFRESH = frozenset({"client_id", "client_id_issued_at", "created_at"})
# Built once, the id bound at execution: every token, authorization and registration request reads its client, and
# building the expression cost more than running it (py-spy, the whole flow in process).
_GET = (
    select(OAuthClient).where(OAuthClient.client_id == bindparam("client_id")).execution_options(populate_existing=True)
)


class ClientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, client: OAuthClient) -> None:
        self.session.add(client)
        await self.session.flush()

    async def get(self, client_id: str) -> OAuthClient | None:
        return await self.session.scalar(_GET, {"client_id": client_id})

    async def save_described(self, client: OAuthClient, *, replaces: Collection[str]) -> bool:
        """Insert `client` (a CIMD or pre-registered client, whose metadata lives outside this database), or refresh
        the row with its id in place if that row's kind is one of `replaces`. One statement (INSERT … ON CONFLICT
        DO UPDATE … WHERE), so two requests racing to store the same document cannot fail each other.

        False when a row of another kind holds the id (it is left alone): a CIMD document never overwrites a
        pre-registered client, and nothing overwrites a dynamically registered one.
        """
        values = {column.key: getattr(client, column.key) for column in OAuthClient.__table__.columns}
        dialect = self.session.get_bind().dialect.name
        statement = dialect_insert(dialect, OAuthClient).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[OAuthClient.client_id],
            set_={key: statement.excluded[key] for key in values if key not in _KEPT_ON_REFRESH},
            where=OAuthClient.kind.in_(list(replaces)),
        )
        result = await self.session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def retire_preregistered(self, keep: Collection[str], now: datetime) -> list[str]:
        """Marks every pre-registered client not in `keep` retired (it left the clients file); their ids."""
        statement = (
            update(OAuthClient)
            .where(
                OAuthClient.kind == PREREGISTERED,
                OAuthClient.retired_at.is_(None),
                OAuthClient.client_id.not_in(list(keep)),
            )
            .values(retired_at=now)
            .returning(OAuthClient.client_id)
        )
        return list((await self.session.scalars(statement)).all())
