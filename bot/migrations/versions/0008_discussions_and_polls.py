"""discussions (topics, comments, reports, subscriptions, mutes) and polls (open and secret ballots);
households gain owner and floor_area for owner votes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.models.base

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('discussion_settings',
    sa.Column('committee_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('residents_publish', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['committee_id'], ['regions.id'], name=op.f('fk_discussion_settings_committee_id_regions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('committee_id', name=op.f('pk_discussion_settings'))
    )
    op.create_table('discussion_mutes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('committee_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('until', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('by_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_discussion_mutes_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['by_account_id'], ['accounts.id'], name=op.f('fk_discussion_mutes_by_account_id_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['committee_id'], ['regions.id'], name=op.f('fk_discussion_mutes_committee_id_regions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_discussion_mutes')),
    sa.UniqueConstraint('committee_id', 'account_id', name=op.f('uq_discussion_mutes_committee_id_account_id'))
    )
    op.create_table('polls',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('committee_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('multiple', sa.Integer(), nullable=False),
    sa.Column('eligible', sa.Text(), nullable=True),
    sa.Column('unit', sa.Enum('resident', 'household', 'owner', name='pollunit', native_enum=False, length=16), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('quorum', sa.String(length=32), nullable=True),
    sa.Column('secret', sa.Boolean(), nullable=False),
    sa.Column('allow_change', sa.Boolean(), nullable=False),
    sa.Column('opens_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closes_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Enum('scheduled', 'open', 'closed', name='pollstatus', native_enum=False, length=16), nullable=False),
    sa.Column('created_by_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('announced_at', services.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', services.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', services.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('results', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['committee_id'], ['regions.id'], name=op.f('fk_polls_committee_id_regions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['created_by_account_id'], ['accounts.id'], name=op.f('fk_polls_created_by_account_id_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_polls'))
    )
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_polls_committee_id'), ['committee_id'], unique=False)
        batch_op.create_index('ix_polls_status_closes_at', ['status', 'closes_at'], unique=False)

    op.create_table('topics',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('committee_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('compound_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('building', sa.String(length=32), nullable=True),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'open', 'locked', 'rejected', name='topicstatus', native_enum=False, length=16), nullable=False),
    sa.Column('author_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('author_building', sa.String(length=32), nullable=True),
    sa.Column('author_role', sa.String(length=16), nullable=True),
    sa.Column('created_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', services.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decided_by_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('last_activity_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('client_key', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['author_account_id'], ['accounts.id'], name=op.f('fk_topics_author_account_id_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['committee_id'], ['regions.id'], name=op.f('fk_topics_committee_id_regions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['compound_id'], ['regions.id'], name=op.f('fk_topics_compound_id_regions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['decided_by_account_id'], ['accounts.id'], name=op.f('fk_topics_decided_by_account_id_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_topics')),
    sa.UniqueConstraint('client_key', name=op.f('uq_topics_client_key'))
    )
    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.create_index('ix_topics_committee_status', ['committee_id', 'status', 'last_activity_at'], unique=False)

    op.create_table('comments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('topic_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('parent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('author_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('author_building', sa.String(length=32), nullable=True),
    sa.Column('author_role', sa.String(length=16), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('hidden_at', services.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('hidden_reason', sa.String(length=200), nullable=True),
    sa.Column('hidden_by_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reviewed_at', services.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reviewed_reports', sa.Integer(), nullable=False),
    sa.Column('client_key', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['author_account_id'], ['accounts.id'], name=op.f('fk_comments_author_account_id_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['hidden_by_account_id'], ['accounts.id'], name=op.f('fk_comments_hidden_by_account_id_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['parent_id'], ['comments.id'], name=op.f('fk_comments_parent_id_comments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], name=op.f('fk_comments_topic_id_topics'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_comments')),
    sa.UniqueConstraint('client_key', name=op.f('uq_comments_client_key'))
    )
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.create_index('ix_comments_author_time', ['author_account_id', 'created_at'], unique=False)
        batch_op.create_index('ix_comments_topic', ['topic_id', 'parent_id', 'id'], unique=False)

    op.create_table('poll_tallies',
    sa.Column('poll_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('option', sa.Integer(), nullable=False),
    sa.Column('votes', sa.Integer(), nullable=False),
    sa.Column('area', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.ForeignKeyConstraint(['poll_id'], ['polls.id'], name=op.f('fk_poll_tallies_poll_id_polls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('poll_id', 'option', name=op.f('pk_poll_tallies')),
    sqlite_with_rowid=False
    )
    op.create_table('poll_voters',
    sa.Column('poll_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('unit_key', sa.String(length=32), nullable=False),
    sa.Column('area', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.ForeignKeyConstraint(['poll_id'], ['polls.id'], name=op.f('fk_poll_voters_poll_id_polls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('poll_id', 'unit_key', name=op.f('pk_poll_voters')),
    sqlite_with_rowid=False
    )
    op.create_table('poll_votes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('poll_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('unit_key', sa.String(length=32), nullable=False),
    sa.Column('resident_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('choices', sa.JSON(), nullable=False),
    sa.Column('area', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('created_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['poll_id'], ['polls.id'], name=op.f('fk_poll_votes_poll_id_polls'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_poll_votes_resident_id_residents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_poll_votes')),
    sa.UniqueConstraint('poll_id', 'unit_key', name=op.f('uq_poll_votes_poll_id_unit_key'))
    )
    op.create_table('topic_subscriptions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('topic_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seen_comment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('last_digest_at', services.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_topic_subscriptions_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], name=op.f('fk_topic_subscriptions_topic_id_topics'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_topic_subscriptions')),
    sa.UniqueConstraint('topic_id', 'account_id', name=op.f('uq_topic_subscriptions_topic_id_account_id'))
    )
    with op.batch_alter_table('topic_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_topic_subscriptions_account_id'), ['account_id'], unique=False)

    op.create_table('comment_reports',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('comment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', services.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_comment_reports_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['comment_id'], ['comments.id'], name=op.f('fk_comment_reports_comment_id_comments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_comment_reports')),
    sa.UniqueConstraint('comment_id', 'account_id', name=op.f('uq_comment_reports_comment_id_account_id'))
    )
    with op.batch_alter_table('households', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('floor_area', sa.Numeric(precision=12, scale=2), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('households', schema=None) as batch_op:
        batch_op.drop_column('floor_area')
        batch_op.drop_column('owner')

    op.drop_table('comment_reports')
    with op.batch_alter_table('topic_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_topic_subscriptions_account_id'))

    op.drop_table('topic_subscriptions')
    op.drop_table('poll_votes')
    op.drop_table('poll_voters')
    op.drop_table('poll_tallies')
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.drop_index('ix_comments_topic')
        batch_op.drop_index('ix_comments_author_time')

    op.drop_table('comments')
    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.drop_index('ix_topics_committee_status')

    op.drop_table('topics')
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.drop_index('ix_polls_status_closes_at')
        batch_op.drop_index(batch_op.f('ix_polls_committee_id'))

    op.drop_table('polls')
    op.drop_table('discussion_mutes')
    op.drop_table('discussion_settings')
