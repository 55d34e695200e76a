"""mcp_tasks: tasks of the MCP Tasks extension (2026-07-28) for waiting delegations

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06 02:40:00.000000
"""

from alembic import op
import sqlalchemy as sa
import vouchsim.server.storage.types


revision = '0006'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mcp_tasks',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=512), nullable=False),
    sa.Column('connection_id', sa.String(length=64), nullable=False),
    sa.Column('delegation_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('result_sealed', sa.Text(), nullable=True),
    sa.Column('created_at', vouchsim.server.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_updated_at', vouchsim.server.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', vouchsim.server.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_clients.client_id'], name=op.f('fk_mcp_tasks_client_id_oauth_clients')),
    sa.ForeignKeyConstraint(['connection_id'], ['runtime_connections.id'], name=op.f('fk_mcp_tasks_connection_id_runtime_connections')),
    sa.ForeignKeyConstraint(['delegation_id'], ['delegations.id'], name=op.f('fk_mcp_tasks_delegation_id_delegations')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_mcp_tasks_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mcp_tasks'))
    )
    with op.batch_alter_table('mcp_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mcp_tasks_connection_id'), ['connection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mcp_tasks_delegation_id'), ['delegation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mcp_tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mcp_tasks_delegation_id'))
        batch_op.drop_index(batch_op.f('ix_mcp_tasks_connection_id'))

    op.drop_table('mcp_tasks')
