"""``talprov config check``: the whole config, secret references and (optionally) endpoints."""

from __future__ import annotations

import os
import sys

import click

from talprov.cli.app import EXIT_FAILED, EXIT_USAGE, App, fail, handle_errors, pass_app
from talprov.cli.output import emit, output_option
from talprov.cli.serve import check_startable
from talprov.config import LoadedConfig, find_config_file
from talprov.errors import ConfigError
from talprov.secrets import redact
from talprov.service.config import parse_service_config
from talprov.store.crypto import store_key_from


@click.group(name="config")
def config_group() -> None:
    """Check talprov.yaml."""


@config_group.command("check")
@click.option("--connect", is_flag=True,
              help="Also ask each instance's endpoint whether it answers with these "
                   "credentials.")
@output_option
@pass_app
@handle_errors
def check(app: App, connect: bool, output: str) -> None:
    """Validate the config file, every secret reference, every instance's settings.

    Every command checks the file's shape; this also resolves the references of
    every instance and of the service and image_factory blocks, and builds each
    instance. Exit 0 when all is well, 1 when an instance or the factory fails
    (one row each: an unset secret reference, a missing extra, an endpoint that
    does not answer; `serve` leaves such an instance out and starts), 2 when the
    file itself is malformed or its service block is invalid (one row for it
    too), which `serve` refuses with 2.
    """
    app.check_service_shape = False  # its own row below, with the other rows
    loaded = _loaded_or_report(app, output)
    rows: list[dict[str, object]] = []
    invalid = False
    try:
        # The block's shape too (a misspelt key), and what `talprov serve` refuses to
        # start with (no tokens, TLS files, plain HTTP on a routable address).
        where = f"{loaded.path or 'config'}: service"
        service = parse_service_config(loaded.service_block(), where=where)
        if loaded.config.service is not None:
            check_startable(service, where, warn=False)
            rows.append({"part": "service", "type": "-", "result": "ok"})
    except ConfigError as exc:
        invalid = True
        rows.append({"part": "service", "type": "-", "result": str(exc)})
    try:
        store_key_from(os.environ)
    except ConfigError as exc:
        # As every command that opens the store refuses it (exit 2).
        invalid = True
        rows.append({"part": "TALPROV_STORE_KEY", "type": "-", "result": str(exc)})
    if loaded.factory_raw:
        try:
            loaded.image_factory()
            rows.append({"part": "image_factory", "type": "-", "result": "ok"})
        except ConfigError as exc:
            rows.append({"part": "image_factory", "type": "-", "result": str(exc)})
    for name, block in sorted(loaded.config.providers.items()):
        row: dict[str, object] = {"part": f"providers.{name}", "type": block.type}
        try:
            provider = app.provider(name)
        except ConfigError as exc:
            row["result"] = str(exc)
            rows.append(row)
            continue
        row["result"] = "ok"
        if connect:
            health = provider.health()
            row["result"] = "ok: " + health.message if health.ok else \
                f"unhealthy: {redact(health.message)}"
        rows.append(row)
    emit(rows, output, columns=("part", "type", "result"))
    if invalid:
        # Invalid input, as everywhere: the config `serve` would refuse with 2.
        sys.exit(EXIT_USAGE)
    if any(not str(r["result"]).startswith("ok") for r in rows):
        sys.exit(EXIT_FAILED)


def _loaded_or_report(app: App, output: str) -> LoadedConfig:
    """The loaded config; when the file itself does not load (missing, not YAML,
    a bad key), one row in ``output`` naming the file and the key, and exit 2."""
    try:
        return app.config
    except ConfigError as exc:
        if output in ("json", "yaml"):
            path = find_config_file(app.config_path)
            file = str(path) if path is not None else None
            key = exc.where.removeprefix(file).lstrip(": ") if file else exc.where
            emit([{"part": "file", "type": "-", "result": str(exc), "file": file,
                   "key": key or None, "error": exc.message}], output)
        fail(str(exc))
