"""processed_updates: the updates each bot has handled, for exactly-once effects

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 12:00:00

One row per (bot id, update id), inserted as the first statement of the update's transaction
(services.updates.first_delivery): a redelivered update finds its row and is acknowledged without
being handled again, across workers. Rows older than Telegram's redelivery window are pruned hourly
(seen_at is indexed for that). Downgrade drops the table (the next redelivery is then handled again).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.models.base

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'processed_updates',
        sa.Column('bot_id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('update_id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('seen_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('bot_id', 'update_id', name=op.f('pk_processed_updates')),
    )
    op.create_index('ix_processed_updates_seen_at', 'processed_updates', ['seen_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_processed_updates_seen_at', table_name='processed_updates')
    op.drop_table('processed_updates')
