"""console: registry imports with their progress and report; the residents list's index

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 10:00:00

A registry file uploaded in the console is imported in the background by the worker that received it;
this row holds its progress and its report (the rejected rows' line numbers and reasons, never their
cells), so that any worker can show them.

``ix_residents_list`` (committee, status, building, unit, room, name, id) replaces the index of a
committee's rooms: the console finds a page of a committee's residents along it alone, however deep
in the list (``python -m bench console``: a street of 200,000, a page halfway down took 1.2–1.4 s).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.models.base

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
AT = services.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('registry_imports',
    sa.Column('id', ID, nullable=False),
    sa.Column('committee_id', ID, nullable=False),
    sa.Column('account_id', ID, nullable=True),
    sa.Column('filename', sa.String(length=200), nullable=False),
    sa.Column('flag_missing', sa.Boolean(), nullable=False),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('total_rows', sa.Integer(), nullable=True),
    sa.Column('done_rows', sa.Integer(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=True),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.Column('created_at', AT, nullable=False),
    sa.Column('updated_at', AT, nullable=False),
    sa.Column('finished_at', AT, nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_registry_imports_account_id_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['committee_id'], ['regions.id'], name=op.f('fk_registry_imports_committee_id_regions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registry_imports'))
    )
    with op.batch_alter_table('registry_imports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_registry_imports_committee_id'), ['committee_id'], unique=False)
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.create_index('ix_residents_list', ['committee_id', 'status', 'building', 'unit', 'room', 'name',
                                                    'id'], unique=False)
        batch_op.drop_index('ix_residents_committee_building')


def downgrade() -> None:
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.create_index('ix_residents_committee_building', ['committee_id', 'building', 'unit', 'room'],
                              unique=False)
        batch_op.drop_index('ix_residents_list')
    with op.batch_alter_table('registry_imports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_registry_imports_committee_id'))
    op.drop_table('registry_imports')
