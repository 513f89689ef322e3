"""accounts.phone: the number an account shared as its own Telegram contact, encrypted

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 10:00:00

A resident verified by staff review may have no phone in the registry; the number they shared while
verifying is now kept on their account (an AES-GCM token like residents.phone, services.identity),
so check-in alerts can give staff a number to call. /forget deletes it with the account.

Native ALTER TABLE (SQLite ≥ 3.35 drops columns too): a batch copy of accounts would, with foreign
keys on, break the rows that refer to it. Downgrade drops the numbers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('accounts', sa.Column('phone', sa.String(length=100), nullable=True))


def downgrade() -> None:
    op.execute('ALTER TABLE accounts DROP COLUMN phone')  # in place, on SQLite too (≥ 3.35)
