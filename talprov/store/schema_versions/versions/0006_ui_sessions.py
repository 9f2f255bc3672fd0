"""Status-page sessions, kept server-side so that signing out revokes them.

The ``talprov_session`` cookie held the API token itself; it now holds a random
session id, and this table its SHA-256, the token's name, a digest tied to the
token's value and the expiry.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from talprov.store.schema import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("id_sha256", sa.String(64), primary_key=True),
        sa.Column("token_name", sa.String(255), nullable=False),
        sa.Column("token_check", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_ui_sessions_expires_at", "ui_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_ui_sessions_expires_at", table_name="ui_sessions")
    op.drop_table("ui_sessions")
