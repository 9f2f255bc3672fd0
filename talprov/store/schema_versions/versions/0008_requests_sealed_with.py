"""``requests.sealed_with``: which store key sealed a request's secrets, by key id.

`talprov status` without a name counts every cluster's requests by stage in one
query, decrypting none; a request sealed under another TALPROV_STORE_KEY (after
`apply --reseal`) could not be told apart there, and counted as provisioned where
`status NAME` counts it as unreadable. The key id (an HKDF output of the key,
which reveals neither it nor the Fernet key) tells it apart in SQL. Rows sealed
before this revision read NULL: those are decrypted to tell.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from talprov.store.schema_versions import drop_plain_column

revision = "0008"
down_revision = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A nullable ADD COLUMN: no table rebuild, existing rows read NULL (unknown).
    op.add_column("requests", sa.Column("sealed_with", sa.String(16), nullable=True))


def downgrade() -> None:
    drop_plain_column("requests", "sealed_with")
