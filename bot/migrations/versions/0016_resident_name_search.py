"""residents' name search along a trigram index (SQLite FTS5 trigram table, PostgreSQL pg_trgm)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-09 10:00:00

A name search of three characters or more (``services.residents.name_contains``) was a
``LIKE '%…%'`` over every resident in scope; it now finds its candidates along an index of the names'
trigrams and keeps the LIKE as the final word. SQLite: an external-content FTS5 table with the trigram
tokenizer (SQLite 3.34+), filled here from the existing rows and kept by triggers on residents.
PostgreSQL: the pg_trgm extension (created if missing: trusted since PostgreSQL 13, so a role that may
create objects in the database may create it; else a superuser runs ``CREATE EXTENSION pg_trgm`` once)
and a GIN index over the names. See services/models/core.py; the SQL is spelled out so this revision
stays as it was written even when the models move on.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE = (
    "CREATE VIRTUAL TABLE residents_name_fts USING fts5(name, content='residents', content_rowid='id', "
    "tokenize='trigram', columnsize=0)",
    "INSERT INTO residents_name_fts (residents_name_fts) VALUES ('rebuild')",
    "CREATE TRIGGER residents_name_fts_insert AFTER INSERT ON residents BEGIN "
    "INSERT INTO residents_name_fts (rowid, name) VALUES (new.id, new.name); END",
    "CREATE TRIGGER residents_name_fts_delete AFTER DELETE ON residents BEGIN "
    "INSERT INTO residents_name_fts (residents_name_fts, rowid, name) VALUES ('delete', old.id, old.name); END",
    "CREATE TRIGGER residents_name_fts_update AFTER UPDATE OF id, name ON residents "
    "WHEN old.id IS NOT new.id OR old.name IS NOT new.name BEGIN "
    "INSERT INTO residents_name_fts (residents_name_fts, rowid, name) VALUES ('delete', old.id, old.name); "
    "INSERT INTO residents_name_fts (rowid, name) VALUES (new.id, new.name); END",
)
# The operator class is named with the extension's schema, wherever it was installed.
POSTGRES = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    """DO $$ BEGIN
    EXECUTE format('CREATE INDEX ix_residents_name_trgm ON residents USING gin (name %I.gin_trgm_ops)',
                   (SELECT n.nspname FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
                    WHERE e.extname = 'pg_trgm'));
END $$""",
)


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    for statement in POSTGRES if dialect == 'postgresql' else SQLITE if dialect == 'sqlite' else ():
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == 'postgresql':
        # The extension stays: other objects of the database may use it, and dropping it needs its owner.
        op.execute("DROP INDEX IF EXISTS ix_residents_name_trgm")
    elif dialect == 'sqlite':
        for name in ('insert', 'delete', 'update'):
            op.execute(f"DROP TRIGGER IF EXISTS residents_name_fts_{name}")
        op.execute("DROP TABLE IF EXISTS residents_name_fts")
