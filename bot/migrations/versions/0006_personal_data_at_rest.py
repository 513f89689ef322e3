"""personal data at rest: phones encrypted with a blind index, ID last four as a keyed hash, lock kept

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:00:00

residents.phone and residents.emergency_contact_phone become AES-GCM tokens (services.identity.DataKeys)
and residents.phone_index the blind index of the phone; residents.id_last4 (clear) is replaced by
id_last4_hash (services.identity.hash_id_last4). verification_attempts outlive the account (/forget)
and also count against the registry entry and the phone's blind index. outbox.redacted_at: when a
finished message's payload (an alert's phone numbers…) was blanked after OUTBOX_PII_RETENTION.

The data step needs the deployment's keys, read the way the app reads them (bot.settings): SECRET_KEY
or DATA_DIR/secret_key, DATA_KEY or DATA_DIR/data_key (generated there when missing, like the app
does on its first start). ``bot.migrate.upgrade(engine, settings=...)`` hands in the app's settings;
run standalone, the migration loads them from the environment and ``.env``. Keys are only read when
there are rows to convert, so an empty database needs none.

Columns are replaced with native ALTER TABLE (see _replace_columns).

Downgrade decrypts the phone numbers again, but cannot give back the clear last four of the ID
numbers (only their hash was kept): id_last4 comes back empty, and residents verify by invite or
review until the registry is imported again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from services.models.base import UTCDateTime

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
BATCH = 1000


def _settings():
    settings = context.config.attributes.get('settings')
    if settings is None:
        from bot.settings import load_settings

        settings = load_settings()
    return settings


def _convert(select_sql: str, update_sql: str, convert) -> None:
    """Rewrite rows in batches: ``convert(row, keys, secret)`` gives the new values of one row."""
    conn = op.get_bind()
    rows = conn.execute(sa.text(select_sql)).mappings().all()
    if not rows:
        return
    settings = _settings()
    keys, secret = settings.data_keys(), settings.ensure_secret_key()
    values = [convert(row, keys, secret) for row in rows]
    for i in range(0, len(values), BATCH):
        conn.execute(sa.text(update_sql), values[i:i + BATCH])


def _encrypt_row(row, keys, secret):
    from services.identity import hash_id_last4

    phone, ec = row['phone'], row['emergency_contact_phone']
    last4 = row['id_last4']
    return {
        'id': row['id'],
        'phone_new': keys.encrypt(phone, 'phone') if phone else None,
        'phone_index': keys.phone_index(phone) if phone else None,
        'emergency_contact_phone_new': keys.encrypt(ec, 'phone') if ec else None,
        'id_last4_hash': hash_id_last4(last4, row['id_hash'], secret) if last4 and row['id_hash'] else None,
    }


def _decrypt_row(row, keys, _secret):
    phone, ec = row['phone'], row['emergency_contact_phone']
    return {'id': row['id'], 'phone_new': keys.decrypt(phone, 'phone') if phone else None,
            'emergency_contact_phone_new': keys.decrypt(ec, 'phone') if ec else None}


def _replace_columns(names: Sequence[str], dropped: Sequence[str] = ()) -> None:
    """``x_new`` takes the place of ``x``. Native ALTER TABLE on both backends (SQLite ≥ 3.35): the
    batch mode's copy of residents would, with foreign keys on, null every account's link to it."""
    for name in (*names, *dropped):
        op.execute(f'ALTER TABLE residents DROP COLUMN {name}')
    for name in names:
        op.execute(f'ALTER TABLE residents RENAME COLUMN {name}_new TO {name}')


def upgrade() -> None:
    op.drop_index('ix_residents_phone', table_name='residents')
    op.add_column('residents', sa.Column('phone_new', sa.String(length=100), nullable=True))
    op.add_column('residents', sa.Column('emergency_contact_phone_new', sa.String(length=100), nullable=True))
    op.add_column('residents', sa.Column('phone_index', sa.String(length=64), nullable=True))
    op.add_column('residents', sa.Column('id_last4_hash', sa.String(length=64), nullable=True))
    _convert(
        "SELECT id, phone, emergency_contact_phone, id_hash, id_last4 FROM residents "
        "WHERE phone IS NOT NULL OR emergency_contact_phone IS NOT NULL OR id_last4 IS NOT NULL",
        "UPDATE residents SET phone_new = :phone_new, phone_index = :phone_index, "
        "emergency_contact_phone_new = :emergency_contact_phone_new, id_last4_hash = :id_last4_hash "
        "WHERE id = :id",
        _encrypt_row)
    _replace_columns(('phone', 'emergency_contact_phone'), dropped=('id_last4',))
    op.create_index('ix_residents_phone_index', 'residents', ['phone_index'], unique=False)

    # Nothing refers to verification_attempts, so SQLite's batch copy of it is safe.
    with op.batch_alter_table('verification_attempts', schema=None) as batch_op:
        batch_op.drop_constraint('fk_verification_attempts_account_id_accounts', type_='foreignkey')
        batch_op.alter_column('account_id', existing_type=BigId, nullable=True)
        batch_op.create_foreign_key('fk_verification_attempts_account_id_accounts', 'accounts', ['account_id'],
                                    ['id'], ondelete='SET NULL')
        batch_op.add_column(sa.Column('resident_id', BigId, nullable=True))
        batch_op.add_column(sa.Column('phone_index', sa.String(length=64), nullable=True))
        batch_op.create_foreign_key('fk_verification_attempts_resident_id_residents', 'residents', ['resident_id'],
                                    ['id'], ondelete='SET NULL')
        batch_op.create_index('ix_verification_attempts_resident_at', ['resident_id', 'at'], unique=False)
        batch_op.create_index('ix_verification_attempts_phone_index_at', ['phone_index', 'at'], unique=False)

    op.add_column('outbox', sa.Column('redacted_at', UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.execute('ALTER TABLE outbox DROP COLUMN redacted_at')  # in place, on SQLite too (≥ 3.35)
    op.execute("DELETE FROM verification_attempts WHERE account_id IS NULL")
    with op.batch_alter_table('verification_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_verification_attempts_phone_index_at')
        batch_op.drop_index('ix_verification_attempts_resident_at')
        batch_op.drop_constraint('fk_verification_attempts_resident_id_residents', type_='foreignkey')
        batch_op.drop_column('phone_index')
        batch_op.drop_column('resident_id')
        batch_op.drop_constraint('fk_verification_attempts_account_id_accounts', type_='foreignkey')
        batch_op.alter_column('account_id', existing_type=BigId, nullable=False)
        batch_op.create_foreign_key('fk_verification_attempts_account_id_accounts', 'accounts', ['account_id'],
                                    ['id'], ondelete='CASCADE')

    op.drop_index('ix_residents_phone_index', table_name='residents')
    op.add_column('residents', sa.Column('phone_new', sa.String(length=20), nullable=True))
    op.add_column('residents', sa.Column('emergency_contact_phone_new', sa.String(length=20), nullable=True))
    op.add_column('residents', sa.Column('id_last4', sa.String(length=4), nullable=True))
    _convert(
        "SELECT id, phone, emergency_contact_phone FROM residents "
        "WHERE phone IS NOT NULL OR emergency_contact_phone IS NOT NULL",
        "UPDATE residents SET phone_new = :phone_new, emergency_contact_phone_new = :emergency_contact_phone_new "
        "WHERE id = :id",
        _decrypt_row)
    _replace_columns(('phone', 'emergency_contact_phone'), dropped=('phone_index', 'id_last4_hash'))
    op.create_index('ix_residents_phone', 'residents', ['phone'], unique=False)
