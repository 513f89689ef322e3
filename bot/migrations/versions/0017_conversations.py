"""conversations: the FSM state of each chat kept in the database when there is no Redis

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-11 10:00:00

A deployment without Redis (one process, SQLite or PostgreSQL) kept conversations in memory, so a
restart dropped everyone half-way through one: a comment typed after the restart was not taken as a
comment. Each conversation's step and data now have a row here (bot.conversations), read back when the
process starts and forgotten FSM_TTL after the last step.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.models.base import UTCDateTime

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'conversations',
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('state', sa.String(length=200), nullable=True),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_conversations')),
    )
    op.create_index(op.f('ix_conversations_updated_at'), 'conversations', ['updated_at'])


def downgrade() -> None:
    op.drop_index(op.f('ix_conversations_updated_at'), table_name='conversations')
    op.drop_table('conversations')
