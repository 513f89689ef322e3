"""job_runs: the record of jobs that run once per period across all workers

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10 10:00:00

The nightly rule tags and the weekly check-in reports are claimed per period by one worker: the row
(job, period) is inserted in the job's transaction (services.jobs), so several workers on one
database run them once, and a period missed while every worker was down is run when one starts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.models.base import UTCDateTime

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'job_runs',
        sa.Column('job', sa.String(length=64), nullable=False),
        sa.Column('period', sa.String(length=32), nullable=False),
        sa.Column('worker', sa.String(length=100), nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=False),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('job', 'period', name=op.f('pk_job_runs')),
    )


def downgrade() -> None:
    op.drop_table('job_runs')
