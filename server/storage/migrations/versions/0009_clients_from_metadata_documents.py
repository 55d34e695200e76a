"""oauth_clients: ids as long as a Client ID Metadata Document URL; where a client came from

Revision ID: 0009
Revises: 0004
Create Date: 2026-11-26 10:00:00.000000

`oauth_clients.client_id` and every column that refers to it go from 64 to 512 characters (a CIMD client's id is
its https URL), and a client row says where it came from (`kind`: registered, cimd, preregistered) and, for the
two kinds described outside the database, when its metadata was fetched, until when it may be reused, and when a
pre-registered client left the clients file. On SQLite each table is rebuilt (batch mode); `storage.migrate`
runs migrations there with foreign keys off, as SQLite's own procedure for table rebuilds asks, and checks them
before committing.
"""

from alembic import op
import sqlalchemy as sa
import vouchsim.server.storage.types


revision = '0009'
down_revision = '0008_testbed'
branch_labels = None
depends_on = None

REFERRING = (
    'authorization_requests',
    'runtime_connections',
    'authorization_codes',
    'oauth_tokens',
    'delegations',
    'mcp_sessions',
)


def _widen(table: str, length: int, was: int) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.alter_column(
            'client_id', existing_type=sa.String(length=was), type_=sa.String(length=length), existing_nullable=False
        )


def upgrade() -> None:
    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.alter_column(
            'client_id', existing_type=sa.String(length=64), type_=sa.String(length=512), existing_nullable=False
        )
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='registered', nullable=False))
        batch_op.add_column(sa.Column('metadata_fetched_at', vouchsim.server.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('metadata_expires_at', vouchsim.server.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('retired_at', vouchsim.server.storage.types.UTCDateTime(timezone=True), nullable=True))
    for table in REFERRING:
        _widen(table, 512, 64)


def downgrade() -> None:
    long_ids = op.get_bind().execute(
        sa.text('SELECT count(*) FROM oauth_clients WHERE length(client_id) > 64')
    ).scalar_one()
    if long_ids:
        raise RuntimeError(
            f'cannot downgrade below 0009: {long_ids} client ids are longer than 64 characters (CIMD clients); '
            'delete those clients and what refers to them first'
        )
    for table in REFERRING:
        _widen(table, 64, 512)
    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.drop_column('retired_at')
        batch_op.drop_column('metadata_expires_at')
        batch_op.drop_column('metadata_fetched_at')
        batch_op.drop_column('kind')
        batch_op.alter_column(
            'client_id', existing_type=sa.String(length=512), type_=sa.String(length=64), existing_nullable=False
        )
