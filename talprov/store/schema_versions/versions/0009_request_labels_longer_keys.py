"""``request_labels.key`` holds 317 characters, the longest key the label rule takes.

Kubernetes' label rule (since the mends) accepts a key of a 253-character
DNS-subdomain prefix, a '/' and a 63-character name; the column held 255, so on
PostgreSQL a longer valid key passed validation and then failed the insert.
Only ``request_labels`` stores label keys in a sized column (sets, clusters and
the bare-metal inventory keep their labels inside JSON text).

On SQLite the type change rebuilds ``request_labels`` only: no table refers to
it, so the rebuild cascades nowhere. A downgrade refuses while a longer key is
stored (it would not fit) rather than cut it.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from talprov.store.errors import StoreError

revision = "0009"
down_revision = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def _request_labels(key_length: int) -> sa.Table:
    """The table as it stands, which batch mode copies (offline SQL cannot reflect it)."""
    return sa.Table(
        "request_labels", sa.MetaData(),
        sa.Column("request_id", sa.String(63), sa.ForeignKey("requests.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("key", sa.String(key_length), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Index("ix_request_labels_key_value", "key", "value"),
    )


def upgrade() -> None:
    with op.batch_alter_table("request_labels", copy_from=_request_labels(255)) as batch:
        batch.alter_column("key", type_=sa.String(317), existing_type=sa.String(255),
                           existing_nullable=False)


def downgrade() -> None:
    longer = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM request_labels WHERE length(key) > 255")).scalar_one()
    if longer:
        raise StoreError(f"cannot downgrade below 0009: {longer} stored label keys are "
                         "longer than 255 characters")
    with op.batch_alter_table("request_labels", copy_from=_request_labels(317)) as batch:
        batch.alter_column("key", type_=sa.String(255), existing_type=sa.String(317),
                           existing_nullable=False)
