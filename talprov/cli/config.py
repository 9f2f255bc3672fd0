"""``talprov config check``: the whole config, secret references and (optionally) endpoints."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from talprov.cli.app import EXIT_FAILED, EXIT_USAGE, App, fail, handle_errors, pass_app, say
from talprov.cli.output import emit, output_option
from talprov.cli.serve import check_startable, token_scope_warnings
from talprov.config import LoadedConfig, find_config_file
from talprov.errors import ConfigError
from talprov.logs import tls_off_warning
from talprov.providers.errors import AuthError, ProviderError
from talprov.registry import unverified_tls
from talprov.secrets import redact
from talprov.service.config import parse_service_config
from talprov.store.engine import check_store_url, relative_sqlite_path, store_backend
from talprov.store.errors import StoreError, UnsupportedStore
from talprov.talos.factory import credentials_refused, images_for
from talprov.talos.schematic import Schematic
from talprov.words import counted


@click.group(name="config")
def config_group() -> None:
    """Check talprov.yaml."""


@config_group.command("check")
@click.option("--connect", is_flag=True,
              help="Also ask each instance's endpoint whether it answers with these "
                   "credentials, and the Image Factory whether it answers at its URL.")
@output_option
@pass_app
@handle_errors
def check(app: App, connect: bool, output: str) -> None:
    """Validate the config file, every secret reference, every instance's settings.

    Every command checks the file's shape; this also resolves the references of
    every instance and of the service and image_factory blocks, and builds each
    instance, and checks the store URL as opening the store does (creating,
    migrating and connecting to nothing). Exit 0 when all is well, 1 when an
    instance, the factory or the store fails (one row each: an unset secret
    reference, a missing extra, an endpoint that does not answer, a SQLite
    store's missing directory; `serve` leaves such an instance out and starts), 2
    when the file itself is malformed, its service block is invalid or its store
    is no SQLite or PostgreSQL URL (one row for it too), which `serve` refuses
    with 2. A relative SQLite path is warned about in its row's `warning`.

    \b
    Examples:
      talprov config check
      talprov --config /etc/talprov/talprov.yaml config check -o json
    """
    app.check_service_shape = False  # its own row below, with the other rows
    loaded = _loaded_or_report(app, output)
    file = str(loaded.path) if loaded.path else None
    rows: list[dict[str, object]] = []
    invalid = False
    try:
        service_row = _service_row(loaded, file)
        if service_row is not None:
            rows.append(service_row)
    except ConfigError as exc:
        invalid = True
        rows.append(_row("service", "-", file, "service", exc))
    store_row, store_invalid = _store_row(app, loaded, file)
    invalid = invalid or store_invalid
    rows.append(store_row)
    try:
        app.store_key()  # what every command that opens the store takes
    except ConfigError as exc:
        # As every command that opens the store refuses it (exit 2). An environment
        # variable, not a line of the file: no file.
        invalid = True
        rows.append(_row("TALPROV_STORE_KEY", "-", None, "TALPROV_STORE_KEY", exc))
    if loaded.factory_raw or connect:
        rows.append(_factory_row(app, file, connect=connect))
    for name, block in sorted(loaded.config.providers.items()):
        part = f"providers.{name}"
        try:
            provider = app.provider(name)
            _check_local_files(provider)
        except ConfigError as exc:
            rows.append(_row(part, block.type, file, part, exc))
            continue
        row = _row(part, block.type, file, part)
        off = unverified_tls(loaded.provider_block(name))
        if off is not None:  # on stderr too; in the row for a script reading -o json
            row["warning"] = tls_off_warning(f"provider instance {name}", off)
        if connect:
            health = provider.health()
            row["result"] = "ok: " + health.message if health.ok else \
                f"unhealthy: {redact(health.message)}"
            row["error"] = None if health.ok else redact(health.message)
        rows.append(row)
    emit(rows, output, columns=("part", "type", "result"))
    if invalid:
        # Invalid input, as everywhere: the config `serve` would refuse with 2.
        sys.exit(EXIT_USAGE)
    if any(not str(r["result"]).startswith("ok") for r in rows):
        sys.exit(EXIT_FAILED)


def _service_row(loaded: LoadedConfig, file: str | None) -> dict[str, object] | None:
    """The service row (None without a service block): the block's shape too (a
    misspelt key), and what `talprov serve` refuses to start with (no tokens, TLS
    files, plain HTTP on a routable address), raised as ``ConfigError``; serve's
    start-up warnings about token scopes in its ``warning`` and on stderr."""
    where = f"{loaded.path or 'config'}: service"
    service = parse_service_config(loaded.service_block(), where=where)
    if loaded.config.service is None:
        return None
    scopes = token_scope_warnings(service, loaded.config.providers, where)
    for warning in scopes:
        say(f"warning: {warning}", level=logging.WARNING)
    check_startable(service, where, warn=False)
    row = _row("service", "-", file, "service")
    prefix = f"{file}: " if file else ""
    # The row names its file apart, as for its errors.
    row["warning"] = "\n".join(w.removeprefix(prefix) for w in scopes) or None
    return row


def _store_row(app: App, loaded: LoadedConfig,
               file: str | None) -> tuple[dict[str, object], bool]:
    """The store row and whether the URL is invalid input: what opening the store
    would refuse, refused here in its words (a URL that is not SQLite or
    PostgreSQL is invalid, as every command exits 2 for it; a driver missing or a
    SQLite file's directory missing is a failed row, exit 1), and a warning for a
    relative SQLite path. Creates, migrates and connects to nothing; never shows a
    password."""
    if app.store_url is not None:  # --store or TALPROV_STORE: no line of the file
        file, key, url = None, "--store", app.store_url
    elif loaded.config.store is not None:
        key, url = "store", loaded.config.store
    else:
        # The default under $XDG_STATE_HOME, whose directory talprov makes itself.
        return _row("store", "sqlite", None, "store"), False
    where = f"{file}: {key}" if file else key
    try:
        check_store_url(url)
    except StoreError as exc:
        error = ConfigError(where, redact(str(exc)))
        return (_row("store", store_backend(url), file, key, error),
                isinstance(exc, UnsupportedStore))
    row = _row("store", store_backend(url), file, key)
    relative = relative_sqlite_path(url)
    if relative is not None:
        # Not changed to the config file's directory: that would move the stores of
        # everyone who runs talprov where their relative store lies.
        row["warning"] = (f"store: {relative} is a relative path, resolved against the "
                          f"current directory ({Path.cwd()}), not the config file's: "
                          "a command run elsewhere uses another store; write an "
                          "absolute path (sqlite:////PATH, four slashes)")
        say(f"warning: {row['warning']}", level=logging.WARNING)
    return row, False


def _check_local_files(provider: object) -> None:
    """A bare-metal instance's boot-server files (``ipxe_dir``), which ``serve``
    needs on this host. Raises ``ConfigError`` naming the field."""
    from talprov.baremetal.config import BareMetalConfig

    config = getattr(provider, "config", None)
    if isinstance(config, BareMetalConfig):
        config.check_boot_files()


def _factory_row(app: App, file: str | None, *, connect: bool) -> dict[str, object]:
    """The image_factory row: its references resolve, and with ``connect`` the
    factory answers its list of versions at this URL and TLS setting and, when
    credentials are configured, accepts them (a 401/403 names the field)."""
    try:
        settings = app.config.image_factory()
    except ConfigError as exc:
        return _row("image_factory", "-", file, "image_factory", exc)
    row = _row("image_factory", "-", file, "image_factory")
    if settings.insecure:
        row["warning"] = tls_off_warning("the Image Factory", "image_factory.insecure: true")
    # Built with or without --connect: a check uses the factory's settings, so an
    # insecure one is warned about here as by every command that fetches images.
    try:
        factory = images_for(app.runtime)
    except ConfigError as exc:
        return _row("image_factory", "-", file, "image_factory", exc)
    except OSError as exc:  # ssl's error for an unreadable ca_file names no file
        return _row("image_factory", "-", file, "image_factory.ca_file", ConfigError(
            "image_factory.ca_file", f"cannot read {settings.ca_file}: {exc.strerror or exc}"))
    if connect:
        try:
            offered = factory.versions()
            if factory.authenticated:
                # GET /versions needs no credentials: a wrong password passed it.
                # Registering the empty schematic needs them (idempotent: the
                # factory answers the same id; it owns nothing but an empty image).
                factory.register(Schematic())
        except AuthError as exc:
            refused = credentials_refused(exc, username_set=settings.username is not None)
            return _row("image_factory", "-", file, refused.where, refused)
        except ProviderError as exc:
            row["result"] = f"unhealthy: {redact(str(exc))}"
            row["error"] = redact(str(exc))
        else:
            row["result"] = f"ok: answers, {counted(len(offered), 'Talos version')} offered" + (
                ", credentials accepted" if factory.authenticated else "")
    return row


def _loaded_or_report(app: App, output: str) -> LoadedConfig:
    """The loaded config; when the file itself does not load (missing, not YAML,
    a bad key), one row in ``output`` naming the file and the key, and exit 2."""
    try:
        return app.config
    except ConfigError as exc:
        if output in ("json", "yaml"):
            path = find_config_file(app.config_path)
            file = str(path) if path is not None else None
            emit([_row("file", "-", file, None, exc)], output)
        fail(str(exc))


def _row(part: str, kind: str, file: str | None, key: str | None,
         error: ConfigError | None = None) -> dict[str, object]:
    """One row of ``config check``, every row with the same keys: ``part``, ``type``,
    ``result`` (the table's line), ``file`` (None for the environment), ``key`` (the
    field at fault, else the part checked), ``error`` (None when well) and
    ``warning`` (None; the caller sets it for a part that checks no TLS
    certificate). Pure."""
    if error is None:
        return {"part": part, "type": kind, "result": "ok", "file": file, "key": key,
                "error": None, "warning": None}
    where = error.where.removeprefix(file).lstrip(": ") if file else error.where
    return {"part": part, "type": kind, "result": str(error), "file": file,
            "key": where or key, "error": error.message, "warning": None}
