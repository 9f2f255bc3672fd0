"""An index on ``requests.updated_at``: "what changed since" reads in O(changes).

The status page polls for requests changed since the newest change it has seen
(:meth:`talprov.store.browse.BrowseMethods.changed_since`); without the index each
poll would scan every request.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_requests_updated_at", "requests", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_requests_updated_at", table_name="requests")
