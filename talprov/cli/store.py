"""``talprov store``: the schema of the state store (Alembic revisions).

Every other command upgrades the schema on first use; these let an operator
see where it stands, upgrade on purpose, or get the SQL to apply by hand.
"""

from __future__ import annotations

from typing import Any

import click

from talprov.cli.app import EXIT_FAILED, App, fail, handle_errors, pass_app
from talprov.cli.invoked import talprov_line
from talprov.cli.output import emit, output_option
from talprov.store.engine import masked_url, missing_sqlite_file
from talprov.store.upgrade import SchemaStatus, head_revision, offline_sql

_COLUMNS = ("store", "current", "head", "pending", "legacy_version")


@click.group()
def store() -> None:
    """Inspect and upgrade the state store's schema."""


@store.command()
@output_option
@pass_app
@handle_errors
def status(app: App, output: str) -> None:
    """Show the store's schema revision and the revisions still to apply. Writes
    nothing: exit 1 when the store is a SQLite file that does not exist."""
    missing = missing_sqlite_file(app.resolved_store_url())
    if missing is not None:
        fail(f"store: the SQLite file {missing} does not exist; `{talprov_line('store upgrade')}` "
             "creates it (as any other command does)", EXIT_FAILED)
    emit(_row(app, app.unmigrated_store().schema_status()), output, columns=_COLUMNS)


@store.command()
@click.option("--sql", "as_sql", is_flag=True,
              help="Print the SQL instead of running it (connects to nothing).")
@click.option("--from", "start", metavar="REVISION",
              help="With --sql: the revision the store is at (default: an empty database).")
@output_option
@pass_app
@handle_errors
def upgrade(app: App, as_sql: bool, start: str | None, output: str) -> None:
    """Upgrade the store's schema to the newest revision; idempotent.

    Safe while other talprov processes run: they wait for the upgrade. Stores
    made by talprov 0.1 are upgraded in place.
    """
    if start and not as_sql:
        raise click.UsageError("--from only applies with --sql")
    if as_sql:
        sql = offline_sql(masked_url(app.resolved_store_url()), start=start)
        if start is not None and start == head_revision():
            # Alembic writes nothing then; an empty output reads like a failure. A
            # comment keeps the output valid SQL for a pipe into psql.
            sql = f"-- revision {start} is the newest: there is nothing to apply\n"
        click.echo(sql, nl=False)
        return
    opened = app.unmigrated_store()
    opened.migrate()
    emit(_row(app, opened.schema_status()), output, columns=_COLUMNS)


def _row(app: App, found: SchemaStatus) -> dict[str, Any]:
    return {
        "store": masked_url(app.resolved_store_url()),
        "current": found.current,
        "head": found.head,
        "pending": list(found.pending),
        "legacy_version": found.legacy_version,
    }
