"""testbed: the clock offset and injected faults, shared by every instance

Revision ID: 0008_testbed
Revises: 0004
Create Date: 2026-11-26 10:00:00.000000
"""

from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa
import vouchsim.server.storage.types


revision = '0008_testbed'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    state = op.create_table('testbed_state',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', vouchsim.server.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_testbed_state'))
    )
    # The clock's row exists from the start, so instances only ever update it (under a row lock).
    op.bulk_insert(state, [{'name': 'clock', 'value': {'offset_seconds': 0.0}, 'updated_at': datetime.now(UTC)}])
    op.create_table('testbed_faults',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('match', sa.JSON(), nullable=False),
    sa.Column('action', sa.JSON(), nullable=False),
    sa.Column('times', sa.Integer(), nullable=True),
    sa.Column('remaining', sa.Integer(), nullable=True),
    sa.Column('fired', sa.Integer(), nullable=False),
    sa.Column('created_at', vouchsim.server.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_testbed_faults'))
    )


def downgrade() -> None:
    op.drop_table('testbed_faults')
    op.drop_table('testbed_state')
