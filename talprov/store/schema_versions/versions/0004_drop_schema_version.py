"""Drop ``schema_version``, where talprov 0.1's own runner recorded its versions.

Stores made before Alembic are stamped with the matching revision first (see
talprov.store.upgrade); from then on ``alembic_version`` is the only record.
Downgrading does not bring the table back: nothing reads it any more.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute("DROP TABLE IF EXISTS schema_version")


def downgrade() -> None:
    pass
