"""Rendering command results as a table, JSON or YAML, with secrets masked."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table

from talprov.secrets import redact

FORMATS = ("table", "json", "yaml")
output_option = click.option(
    "-o", "--output", type=click.Choice(FORMATS), default="table", show_default=True,
    help="Output format; json and yaml are stable for scripts.",
)


def emit(data: Any, fmt: str, *, columns: Sequence[str] | None = None,
         title: str | None = None) -> None:
    """Print ``data`` (a list of rows or one mapping) in ``fmt``."""
    if fmt == "json":
        click.echo(redact(json.dumps(data, indent=2, default=str)))
        return
    if fmt == "yaml":
        click.echo(redact(yaml.safe_dump(json.loads(json.dumps(data, default=str)),
                                         sort_keys=False)).rstrip())
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        click.echo("(none)")
        return
    cols = list(columns or rows[0].keys())
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*(redact(_cell(row.get(col))) for col in cols))
    # A pipe or a CI log has no width; do not squeeze ids into 80 columns there.
    width = None if sys.stdout.isatty() else 200
    Console(soft_wrap=True, width=width).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    return str(value)
