"""Cluster leases: which worker runs a cluster's scaler passes, and until when.

Several ``talprov serve`` replicas must never run passes for one cluster at
once (two planners would both create machines).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from talprov.store.schema import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("clusters", sa.Column("lease_owner", sa.String(255), nullable=True))
    op.add_column("clusters", sa.Column("lease_until", UtcDateTime, nullable=True))


def downgrade() -> None:
    # Batch mode: SQLite before 3.35 cannot drop a column in place.
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
