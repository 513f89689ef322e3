"""segment covering index; PostgreSQL residents.tag_ids for has_tag

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 15:40:00

One covering index over the fields segments filter on replaces (committee_id) and
(committee_id, birth_date), whose leading columns it shares. On PostgreSQL, residents get their
tag ids as a GIN-indexed array kept by statement triggers on resident_tags (filled here from the
existing rows); see services/models/tags.py. The SQL is spelled out so this revision stays as it
was written even when the models move on.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEGMENT_COLUMNS = ['committee_id', 'status', 'birth_date', 'living_alone', 'gender', 'building', 'unit',
                   'disability_level', 'monthly_income', 'hukou']

SYNC_FUNCTION = """CREATE OR REPLACE FUNCTION residents_sync_tag_ids() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Added and removed ids are applied to the row as it stands: under concurrent tagging a blocked
    -- UPDATE re-reads the row another transaction just changed, so neither change is lost.
    IF TG_OP = 'INSERT' THEN
        UPDATE residents AS r SET tag_ids = r.tag_ids || n.ids
        FROM (SELECT resident_id, array_agg(tag_id) AS ids FROM changed_rows GROUP BY resident_id) AS n
        WHERE r.id = n.resident_id;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE residents AS r SET tag_ids = ARRAY(SELECT x FROM unnest(r.tag_ids) AS x WHERE x <> ALL (o.ids))
        FROM (SELECT resident_id, array_agg(tag_id) AS ids FROM changed_rows GROUP BY resident_id) AS o
        WHERE r.id = o.resident_id;
    ELSE  -- rows moved between residents or tags (nothing does this today): recount those residents
        UPDATE residents AS r SET tag_ids = ARRAY(SELECT t.tag_id FROM resident_tags AS t WHERE t.resident_id = r.id)
        WHERE r.id IN (SELECT resident_id FROM changed_rows UNION SELECT resident_id FROM new_rows);
    END IF;
    RETURN NULL;
END $$"""


def upgrade() -> None:
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.drop_index('ix_residents_committee_birth')
        batch_op.drop_index('ix_residents_committee_id')
        batch_op.create_index('ix_residents_segment', SEGMENT_COLUMNS, unique=False)
    if op.get_context().dialect.name != 'postgresql':
        return
    op.execute("ALTER TABLE residents ADD COLUMN tag_ids bigint[] NOT NULL DEFAULT '{}'")
    op.execute("UPDATE residents AS r SET tag_ids = t.ids FROM (SELECT resident_id, array_agg(tag_id ORDER BY tag_id) "
               "AS ids FROM resident_tags GROUP BY resident_id) AS t WHERE t.resident_id = r.id")
    op.execute("CREATE INDEX ix_residents_tag_ids ON residents USING gin (tag_ids)")
    op.execute(SYNC_FUNCTION)
    op.execute("CREATE TRIGGER resident_tags_sync_insert AFTER INSERT ON resident_tags "
               "REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION residents_sync_tag_ids()")
    op.execute("CREATE TRIGGER resident_tags_sync_update AFTER UPDATE ON resident_tags "
               "REFERENCING OLD TABLE AS changed_rows NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION residents_sync_tag_ids()")
    op.execute("CREATE TRIGGER resident_tags_sync_delete AFTER DELETE ON resident_tags "
               "REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION residents_sync_tag_ids()")


def downgrade() -> None:
    if op.get_context().dialect.name == 'postgresql':
        for name in ('insert', 'update', 'delete'):
            op.execute(f"DROP TRIGGER resident_tags_sync_{name} ON resident_tags")
        op.execute("DROP FUNCTION residents_sync_tag_ids()")
        op.execute("DROP INDEX ix_residents_tag_ids")
        op.execute("ALTER TABLE residents DROP COLUMN tag_ids")
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.drop_index('ix_residents_segment')
        batch_op.create_index('ix_residents_committee_id', ['committee_id'], unique=False)
        batch_op.create_index('ix_residents_committee_birth', ['committee_id', 'birth_date'], unique=False)
