"""Initial schema: requests with their labels, events and audit, cluster specs.

The tables are spelled out here rather than taken from talprov.store.schema so
that this version creates the same tables forever.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from talprov.store.schema import UtcDateTime

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("provider", sa.String(255), nullable=False, index=True),
        sa.Column("stage", sa.String(32), nullable=False, index=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("machine_config", sa.Text, nullable=False),
        sa.Column("join_api_url", sa.Text, nullable=True),
        sa.Column("join_options", sa.Text, nullable=True),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("step_name", sa.String(255), nullable=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=True),
        sa.Column("step_started_at", UtcDateTime, nullable=True),
        sa.Column("infra_id", sa.String(255), nullable=True),
        sa.Column("machine_uuid", sa.String(64), nullable=True),
        sa.Column("addresses", sa.Text, nullable=False),
        sa.Column("marked_for_deletion", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_until", UtcDateTime, nullable=True),
    )
    op.create_table(
        "request_labels",
        sa.Column(
            "request_id",
            sa.String(63),
            sa.ForeignKey("requests.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Index("ix_request_labels_key_value", "key", "value"),
    )
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "request_id",
            sa.String(63),
            sa.ForeignKey("requests.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(63), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "clusters",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("clusters", "audit", "events", "request_labels", "requests"):
        op.drop_table(table)
