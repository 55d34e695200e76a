"""signing_keys: one current (unretired) key per algorithm, a partial unique index

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-07 02:15:00.000000

Two instances starting on a new database could each make the first key of an algorithm: both were published, every
instance signed with the newest, and the other stayed current and published for good. A database that already holds
such keys keeps the newest of each algorithm current (the one every instance signed with) and retires the others;
they stay published (`publish_until` empty), as they were, since tokens they signed may still be in use.
"""

from alembic import op
import sqlalchemy as sa
import vouchsim.server.storage.types


revision = '0010'
down_revision = '0006'
branch_labels = None
depends_on = None

CURRENT = sa.text('retired_at IS NULL')


def upgrade() -> None:
    moment = vouchsim.server.storage.types.UTCDateTime(timezone=True)
    keys = sa.table(
        'signing_keys',
        sa.column('kid'),
        sa.column('algorithm'),
        sa.column('created_at', moment),
        sa.column('retired_at', moment),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(keys.c.kid, keys.c.algorithm, keys.c.created_at)
        .where(keys.c.retired_at.is_(None))
        .order_by(keys.c.algorithm, keys.c.created_at.desc(), keys.c.kid.desc())
    ).all()
    seen: set[str] = set()
    for kid, algorithm, created_at in rows:
        if algorithm in seen:
            bind.execute(sa.update(keys).where(keys.c.kid == kid).values(retired_at=created_at))
        seen.add(algorithm)
    op.create_index(
        'uq_signing_keys_current_algorithm',
        'signing_keys',
        ['algorithm'],
        unique=True,
        postgresql_where=CURRENT,
        sqlite_where=CURRENT,
    )


def downgrade() -> None:
    op.drop_index('uq_signing_keys_current_algorithm', table_name='signing_keys')
