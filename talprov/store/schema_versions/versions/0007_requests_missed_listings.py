"""``requests.missed_listings``: how many listings in a row missed a provisioned machine.

A provisioned request is declared lost only after its machine is missing from
several consecutive listings (a cloud's listing may lag once). The count lived
in each reconciler's memory, so a process that runs one pass and exits
(`talprov reconcile --once` from cron, `apply --wait`) never reached it; in the
store every process counts on from where the last one stopped.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from talprov.store.schema_versions import drop_plain_column

revision = "0007"
down_revision = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A plain ADD COLUMN with a default: no table rebuild, existing rows read 0.
    op.add_column("requests", sa.Column("missed_listings", sa.Integer, nullable=False,
                                        server_default="0"))


def downgrade() -> None:
    drop_plain_column("requests", "missed_listings")
