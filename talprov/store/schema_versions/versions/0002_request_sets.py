"""Request sets get their own table instead of reserved cluster documents.

Before this version the service kept each MachineRequestSet as a ``clusters``
row named ``machine-request-set/<name>``, its secrets already sealed with the
store's SecretCodec. They move as they are (no key is needed: the sealed text
is copied), so the scaler stops seeing them. An offline (``--sql``) run cannot
read rows: it creates the table and says in a comment that such documents move
only in an online upgrade.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from talprov.store.errors import StoreError
from talprov.store.records import dump_json
from talprov.store.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels: str | None = None
depends_on: str | None = None

SET_PREFIX = "machine-request-set/"
SECRET_FIELDS = ("machine_config", "join_api_url")
TIME_FIELDS = ("created_at", "updated_at")
SEALED = ("plain:", "fernet:")

_clusters = sa.table(
    "clusters",
    sa.column("name", sa.String),
    sa.column("spec", sa.Text),
    sa.column("updated_at", UtcDateTime),
)


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("machine_config", sa.Text, nullable=False),
        sa.Column("join_api_url", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    ]


def _request_sets() -> sa.Table:
    return sa.Table("request_sets", sa.MetaData(), *_columns())


def upgrade() -> None:
    op.create_table("request_sets", *_columns())
    if context.is_offline_mode():
        op.execute(
            f"-- clusters rows named {SET_PREFIX}* move to request_sets only online"
        )
        return
    conn = op.get_bind()
    old = conn.execute(
        sa.select(_clusters).where(_clusters.c.name.startswith(SET_PREFIX, autoescape=True))
    ).all()
    for row in old:
        conn.execute(_request_sets().insert().values(**set_row(row.name, row.spec, row.updated_at)))
    if old:
        conn.execute(_clusters.delete().where(_clusters.c.name.in_([r.name for r in old])))


def downgrade() -> None:
    request_sets = _request_sets()
    if not context.is_offline_mode():
        conn = op.get_bind()
        for row in conn.execute(sa.select(request_sets)).all():
            document = json.loads(row.document)
            document.update(machine_config=row.machine_config, join_api_url=row.join_api_url,
                            created_at=row.created_at.isoformat(),
                            updated_at=row.updated_at.isoformat())
            conn.execute(_clusters.insert().values(
                name=SET_PREFIX + row.name, spec=json.dumps(document), updated_at=row.updated_at))
    op.drop_table("request_sets")


def set_row(cluster_name: str, spec: str, row_updated_at: datetime) -> dict[str, Any]:
    """The ``request_sets`` row for one old set document.

    Raises StoreError, naming the row but never its content, for a document
    the service cannot have written (so the upgrade stops and changes nothing).
    """
    name = cluster_name.removeprefix(SET_PREFIX)
    document: Any = None
    with contextlib.suppress(ValueError):
        document = json.loads(spec)
    if not isinstance(document, dict):
        raise StoreError(f"cluster row {cluster_name!r} is not a request set document; "
                         "fix or remove it")
    machine_config, join_url = (document.pop(field, None) for field in SECRET_FIELDS)
    if not (isinstance(machine_config, str) and machine_config.startswith(SEALED)):
        raise StoreError(f"request set {name!r}: stored machine_config is not in a known format")
    if join_url is not None and not (isinstance(join_url, str) and join_url.startswith(SEALED)):
        raise StoreError(f"request set {name!r}: stored join_api_url is not in a known format")
    created, updated = (_moment(document.pop(field, None), row_updated_at)
                        for field in TIME_FIELDS)
    return {
        "name": name,
        "document": dump_json(document, what=f"request set {name}"),
        "machine_config": machine_config,
        "join_api_url": join_url,
        "created_at": created,
        "updated_at": updated,
        "version": 1,
    }


def _moment(text: object, fallback: datetime) -> datetime:
    # The service wrote aware ISO 8601 times; anything else takes the row's own
    # time rather than failing the upgrade over a bookkeeping field.
    parsed: datetime | None = None
    if isinstance(text, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(text)
    if parsed is None:
        return fallback
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
