"""built-in tag lives_alone is called living_alone, like the registry field

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 23:00:00

The tag and the field it is computed from now share one word. A database that already has a
built-in ``living_alone`` keeps it (``ensure_default_tags`` made it) and the old row stays as is;
``has_tag("lives_alone")`` in saved segments keeps working through the alias in services/tags.py.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE tags SET code = 'living_alone' WHERE code = 'lives_alone' AND region_id IS NULL "
               "AND NOT EXISTS (SELECT 1 FROM tags AS t WHERE t.code = 'living_alone' AND t.region_id IS NULL)")


def downgrade() -> None:
    op.execute("UPDATE tags SET code = 'lives_alone' WHERE code = 'living_alone' AND region_id IS NULL "
               "AND NOT EXISTS (SELECT 1 FROM tags AS t WHERE t.code = 'lives_alone' AND t.region_id IS NULL)")
