"""policy matching: catalogue with dated versions, questionnaire fields and answers, take-up cases

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.models.base

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
FK = ID  # foreign keys take the type of the ids they point at


def upgrade() -> None:
    utc = services.models.base.UTCDateTime(timezone=True)
    op.create_table('policies',
    sa.Column('id', ID, nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('region_id', FK, nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('sample', sa.Boolean(), nullable=False),
    sa.Column('source_file', sa.String(length=255), nullable=True),
    sa.Column('created_at', utc, nullable=False),
    sa.Column('updated_at', utc, nullable=False),
    sa.ForeignKeyConstraint(['region_id'], ['regions.id'], name=op.f('fk_policies_region_id_regions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policies')),
    sa.UniqueConstraint('code', name=op.f('uq_policies_code'))
    )
    op.create_table('policy_fields',
    sa.Column('id', ID, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('type', sa.Enum('int', 'decimal', 'bool', 'str', 'date', name='policyfieldtype', native_enum=False, length=16), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('source_file', sa.String(length=255), nullable=True),
    sa.Column('updated_at', utc, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_fields')),
    sa.UniqueConstraint('name', name=op.f('uq_policy_fields_name'))
    )
    op.create_table('policy_versions',
    sa.Column('id', ID, nullable=False),
    sa.Column('policy_id', FK, nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('title_zh', sa.String(length=200), nullable=False),
    sa.Column('title_en', sa.String(length=200), nullable=False),
    sa.Column('rule', sa.Text(), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['policy_id'], ['policies.id'], name=op.f('fk_policy_versions_policy_id_policies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_versions')),
    sa.UniqueConstraint('policy_id', 'valid_from', name=op.f('uq_policy_versions_policy_id_valid_from'))
    )
    op.create_table('policy_answers',
    sa.Column('resident_id', FK, nullable=False),
    sa.Column('field', sa.String(length=64), nullable=False),
    sa.Column('value_int', sa.BigInteger(), nullable=True),
    sa.Column('value_num', sa.Numeric(precision=18, scale=4), nullable=True),
    sa.Column('value_bool', sa.Boolean(), nullable=True),
    sa.Column('value_str', sa.String(length=200), nullable=True),
    sa.Column('value_date', sa.Date(), nullable=True),
    sa.Column('answered_at', utc, nullable=False),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_policy_answers_resident_id_residents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('resident_id', 'field', name=op.f('pk_policy_answers'))
    )
    op.create_table('policy_consents',
    sa.Column('resident_id', FK, nullable=False),
    sa.Column('given_at', utc, nullable=False),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_policy_consents_resident_id_residents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('resident_id', name=op.f('pk_policy_consents'))
    )
    op.create_table('policy_cases',
    sa.Column('id', ID, nullable=False),
    sa.Column('policy_id', FK, nullable=False),
    sa.Column('resident_id', FK, nullable=False),
    sa.Column('status', sa.Enum('notified', 'applied', 'enrolled', 'declined', name='casestatus', native_enum=False, length=16), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('notified_at', utc, nullable=True),
    sa.Column('followup_at', utc, nullable=True),
    sa.Column('applied_at', utc, nullable=True),
    sa.Column('enrolled_at', utc, nullable=True),
    sa.Column('declined_at', utc, nullable=True),
    sa.Column('updated_by_account_id', FK, nullable=True),
    sa.Column('updated_at', utc, nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['policy_id'], ['policies.id'], name=op.f('fk_policy_cases_policy_id_policies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_policy_cases_resident_id_residents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['updated_by_account_id'], ['accounts.id'], name=op.f('fk_policy_cases_updated_by_account_id_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_cases')),
    sa.UniqueConstraint('policy_id', 'resident_id', name=op.f('uq_policy_cases_policy_id_resident_id'))
    )
    op.create_index('ix_policy_cases_followup', 'policy_cases', ['status', 'notified_at'], unique=False)
    op.create_index(op.f('ix_policy_cases_resident_id'), 'policy_cases', ['resident_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_policy_cases_resident_id'), table_name='policy_cases')
    op.drop_index('ix_policy_cases_followup', table_name='policy_cases')
    for table in ('policy_cases', 'policy_consents', 'policy_answers', 'policy_versions', 'policy_fields',
                  'policies'):
        op.drop_table(table)
