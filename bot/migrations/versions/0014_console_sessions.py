"""staff console: one-time sign-in links and sessions

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 10:00:00

``/console`` sends a link valid once for ten minutes; signing in (by the link or by the Mini App's
signed initData) opens a session that ends on logout or after CONSOLE_SESSION_IDLE without a request.
Only SHA-256 hashes of the link's and the session cookie's tokens are stored.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.models.base

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
AT = services.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('console_links',
    sa.Column('id', ID, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('account_id', ID, nullable=False),
    sa.Column('created_at', AT, nullable=False),
    sa.Column('expires_at', AT, nullable=False),
    sa.Column('used_at', AT, nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_console_links_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_console_links')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_console_links_token_hash'))
    )
    with op.batch_alter_table('console_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_links_account_id'), ['account_id'], unique=False)

    op.create_table('console_sessions',
    sa.Column('id', ID, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('account_id', ID, nullable=False),
    sa.Column('via', sa.String(length=16), nullable=False),
    sa.Column('locale', sa.String(length=16), nullable=True),
    sa.Column('created_at', AT, nullable=False),
    sa.Column('last_seen_at', AT, nullable=False),
    sa.Column('ended_at', AT, nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_console_sessions_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_console_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_console_sessions_token_hash'))
    )
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_sessions_account_id'), ['account_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_sessions_account_id'))
    op.drop_table('console_sessions')
    with op.batch_alter_table('console_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_links_account_id'))
    op.drop_table('console_links')
