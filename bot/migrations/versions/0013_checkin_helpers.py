"""check-ins answered by a helper (proxy check-in): answering modes, helpers, hand-overs, invites

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 10:00:00

A plan gains its answering mode (self / proxy / self_then_helper), its helper's account and the
elder's own note; a round records its mode, which helper was asked (and as what), when they were
asked and reminded, and who answered (the elder or the helper). Two new tables: hand-over periods
and one-time helper invite links. Existing plans and rounds are "self", as they were.

checkin_plans gets its foreign key in a batch copy (nothing refers to checkin_plans yet: rounds have
no foreign keys, the invites table is made after it); checkin_rounds columns are added in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.models.base

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MODES = ('self', 'proxy', 'self_then_helper')


def _mode() -> sa.Enum:
    return sa.Enum(*MODES, name='answermode', native_enum=False, length=16)


def upgrade() -> None:
    with op.batch_alter_table('checkin_plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mode', _mode(), server_default='self', nullable=False))
        batch_op.add_column(sa.Column('helper_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                      nullable=True))
        batch_op.add_column(sa.Column('note', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_checkin_plans_helper_account_id'), ['helper_account_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_checkin_plans_helper_account_id_accounts'), 'accounts',
                                    ['helper_account_id'], ['id'], ondelete='SET NULL')

    op.add_column('checkin_rounds', sa.Column('mode', _mode(), server_default='self', nullable=False))
    op.add_column('checkin_rounds', sa.Column('helper_account_id', sa.BigInteger(), nullable=True))
    op.add_column('checkin_rounds', sa.Column('helper_role', sa.String(length=16), nullable=True))
    op.add_column('checkin_rounds', sa.Column('helper_asked_at', services.models.base.UTCDateTime(timezone=True),
                                              nullable=True))
    op.add_column('checkin_rounds', sa.Column('helper_reminded_at', services.models.base.UTCDateTime(timezone=True),
                                              nullable=True))
    op.add_column('checkin_rounds', sa.Column('answered_by_account_id', sa.BigInteger(), nullable=True))
    op.add_column('checkin_rounds', sa.Column('answer_via', sa.String(length=8), nullable=True))

    op.create_table('checkin_handovers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('helper_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('committee_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('substitute_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_by_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('cancelled_at', services.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['committee_id'], ['regions.id'], name=op.f('fk_checkin_handovers_committee_id_regions'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_account_id'], ['accounts.id'],
                            name=op.f('fk_checkin_handovers_created_by_account_id_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['helper_account_id'], ['accounts.id'],
                            name=op.f('fk_checkin_handovers_helper_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['substitute_account_id'], ['accounts.id'],
                            name=op.f('fk_checkin_handovers_substitute_account_id_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkin_handovers'))
    )
    with op.batch_alter_table('checkin_handovers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkin_handovers_committee_id'), ['committee_id'], unique=False)
        batch_op.create_index('ix_checkin_handovers_helper_ends', ['helper_account_id', 'ends_on'], unique=False)

    op.create_table('checkin_helper_invites',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('plan_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('mode', _mode(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_by_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', services.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('used_by_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['created_by_account_id'], ['accounts.id'],
                            name=op.f('fk_checkin_helper_invites_created_by_account_id_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['plan_id'], ['checkin_plans.id'], name=op.f('fk_checkin_helper_invites_plan_id_checkin_plans'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['used_by_account_id'], ['accounts.id'],
                            name=op.f('fk_checkin_helper_invites_used_by_account_id_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkin_helper_invites')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_checkin_helper_invites_code_hash'))
    )
    with op.batch_alter_table('checkin_helper_invites', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkin_helper_invites_plan_id'), ['plan_id'], unique=False)


def downgrade() -> None:
    op.drop_table('checkin_helper_invites')
    op.drop_table('checkin_handovers')
    for name in ('answer_via', 'answered_by_account_id', 'helper_reminded_at', 'helper_asked_at', 'helper_role',
                 'helper_account_id', 'mode'):
        op.execute(f'ALTER TABLE checkin_rounds DROP COLUMN {name}')  # in place, on SQLite too (≥ 3.35)
    with op.batch_alter_table('checkin_plans', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_checkin_plans_helper_account_id_accounts'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_checkin_plans_helper_account_id'))
        batch_op.drop_column('note')
        batch_op.drop_column('helper_account_id')
        batch_op.drop_column('mode')
