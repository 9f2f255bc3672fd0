"""The current shape of the store's tables, as the queries see it.

The tables are *created and changed* only by the Alembic scripts in
:mod:`talprov.store.schema_versions`; this module must describe what the newest
one leaves behind (a test runs Alembic's autogenerate comparison on the two).
Secrets live only in the ``machine_config`` and ``join_api_url`` columns of
``requests`` and ``request_sets``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from talprov.store.crypto import KEY_ID_LENGTH

metadata = sa.MetaData()


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zone type, so values are stored there as naive UTC text of
    a fixed width, which also keeps ``<`` comparisons in SQL correct (leases).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", sa.String(63), primary_key=True),
    sa.Column("provider", sa.String(255), nullable=False, index=True),
    sa.Column("stage", sa.String(32), nullable=False, index=True),
    # MachineRequest JSON without machine_config and join (those are below).
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("machine_config", sa.Text, nullable=False),  # SecretCodec text
    sa.Column("join_api_url", sa.Text, nullable=True),  # SecretCodec text
    # The key id (crypto.derive_key_id) of the key that sealed the two columns
    # above; None when they are plain, and for rows sealed before revision 0008.
    sa.Column("sealed_with", sa.String(KEY_ID_LENGTH), nullable=True),
    sa.Column("join_options", sa.Text, nullable=True),  # JSON: the rest of JoinSpec
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
    # Indexed since schema version 5: the status page asks what changed since a moment.
    sa.Column("updated_at", UtcDateTime, nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_until", UtcDateTime, nullable=True),
    # Since schema version 7: consecutive listings that missed a provisioned machine.
    sa.Column("missed_listings", sa.Integer, nullable=False, server_default="0"),
)

# One row per label so that label selectors use an index instead of a JSON scan.
request_labels = sa.Table(
    "request_labels",
    metadata,
    sa.Column(
        "request_id",
        sa.String(63),
        sa.ForeignKey("requests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # 317: the longest key the label rule takes (253 + "/" + 63), since revision 0009.
    sa.Column("key", sa.String(317), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Index("ix_request_labels_key_value", "key", "value"),
)

events = sa.Table(
    "events",
    metadata,
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

# No foreign key: audit entries outlive the requests they are about.
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(63), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

clusters = sa.Table(
    "clusters",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # Since schema version 3: which worker runs this cluster's scaler passes.
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_until", UtcDateTime, nullable=True),
)

# MachineRequestSets kept by the service. Their own table (since schema version 2)
# rather than reserved names among the cluster specs, so that the scaler only
# ever sees cluster documents and the secrets go through the store's codec.
request_sets = sa.Table(
    "request_sets",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    # The set's JSON document without its machine config and join URL (below).
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("machine_config", sa.Text, nullable=False),  # SecretCodec text
    sa.Column("join_api_url", sa.Text, nullable=True),  # SecretCodec text
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)

# Status-page sessions (since revision 0006): the cookie holds a random id, this
# table only its SHA-256, so a copy of the database signs nobody in. A session
# names the API token it was opened with and a digest tied to that token's value,
# so removing or changing the token ends its sessions.
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("id_sha256", sa.String(64), primary_key=True),
    sa.Column("token_name", sa.String(255), nullable=False),
    sa.Column("token_check", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
)
