"""What every command shares: the loaded config, the store, provider instances.

Everything is loaded lazily so that commands that need no config (``image id --local``)
work without one, and errors surface as one line naming file and field.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from talprov.cli.invoked import talprov_line
from talprov.cli.statusline import STATUS_LINE, LineEndingHandler
from talprov.config import LoadedConfig, load_config, validate_unresolved
from talprov.errors import BeingDeleted, ConfigError, Conflict, did_you_mean
from talprov.logs import JsonFormatter, install_handler, make_handler, tls_off_warning
from talprov.providers.errors import InvalidRequest, ProviderError, describe_error
from talprov.providers.protocol import Provider, Runtime
from talprov.reconcile.instance_health import InstanceBackoff
from talprov.reconcile.listings import MachineListings
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.registry import build_provider, instance_concurrency, unverified_tls
from talprov.runloop import RunLoop
from talprov.scaler.editing import ClusterBusy
from talprov.secrets import RedactingFilter, redact
from talprov.service.config import ServiceConfig
from talprov.store.crypto import KEY_HINT, not_random_reason, store_key_from
from talprov.store.engine import holds_no_file_yet
from talprov.store.errors import StoreError, UnsupportedStore
from talprov.store.store import Store, default_store_url
from talprov.talos.factory import factory_unusable, split_credentials

CLI_HANDLER = "talprov-cli"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: 128 + SIGINT: a command stopped by Ctrl-C, as shells expect.
EXIT_INTERRUPTED = 130
def carried_on_by() -> str:
    """The end of a status line for a change recorded but not yet acted on: what
    acts, as the user's shell runs it (:func:`talprov_line`). Never raises."""
    return f"`{talprov_line('reconcile')}` (or a running `{talprov_line('serve')}`) carries it on"

F = TypeVar("F", bound=Callable[..., Any])


class UnknownName(ConfigError):
    """A name given on the command line (a cluster, a cluster's set, a bare-metal
    machine or instance) that names nothing recorded or configured: exit 1, as
    for an unknown request or request set, not 2 (invalid input)."""


@dataclass
class App:
    """Per-invocation state, created by the root command."""

    config_path: str | None
    store_url: str | None
    verbose: int = 0
    #: --log-format when given; None lets ``service.log_format`` decide in serve.
    log_format: str | None = None
    _config: LoadedConfig | None = None
    _store: Store | None = None
    _store_upgraded: bool = False
    _providers: dict[str, ProviderHandle] = field(default_factory=dict)
    #: Instances all_handles() could not build, with why.
    unusable: dict[str, str] = field(default_factory=dict)
    _unusable_said: set[str] = field(default_factory=set)
    _tls_said: set[str] = field(default_factory=set)  # instances warned about TLS
    _runtime: Runtime | None = None
    _placeholder_warned: bool = False
    #: Whether loading the config checks the service block's shape too (config
    #: check reports it in a row of its own instead).
    check_service_shape: bool = True
    #: Every instance's listing backoff, one for the whole command: its first
    #: pass and its wait say a failing listing once, not once each (QA).
    instance_backoff: InstanceBackoff = field(default_factory=InstanceBackoff)

    @property
    def config(self) -> LoadedConfig:
        if self._config is None:
            loaded = load_config(self.config_path)
            if loaded.config.service is not None and self.check_service_shape:
                # Its shape too, as every command checks the whole file (references
                # are resolved only by serve and config check).
                validate_unresolved(ServiceConfig, loaded.config.service,
                                    f"{loaded.path or 'config'}: service")
            self._config = loaded
        return self._config

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            cfg = self.config.config
            # Resolved now, but only what fetches an image needs it: an unset
            # password must not stop a delete or a listing (factory_unusable).
            problem = None
            try:
                factory = self.config.image_factory()
                url, verify, auth = factory.url, factory.verify(), factory.auth()
            except ConfigError as exc:
                # The block's other values may be unresolved references: take only
                # the URL (resolved on its own; the boot server and asset URLs use
                # it) and verify TLS as by default.
                problem = str(exc)
                url, verify, auth = self.config.factory_url(), True, None
            # Credentials written into the URL are taken out once, here: every
            # asset URL is named by the bare URL (drivers hand those to machines
            # and nodes) and no repr of the runtime shows them. The config refuses
            # both places at once, so at most one of the two is set.
            url, in_url = split_credentials(url)
            auth = auth or in_url
            cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else _default_cache_dir()
            self._runtime = Runtime(
                installation=cfg.installation,
                cache_dir=cache,
                factory_url=url,
                factory_verify_tls=verify,
                factory_auth=auth,
                progress=progress_printer(),
            )
            if problem is not None:
                factory_unusable(self._runtime, problem)
        return self._runtime

    @property
    def store(self) -> Store:
        """The store, its schema upgraded to the newest revision on first use."""
        store = self.unmigrated_store()
        if self._store_upgraded is False:
            store.migrate()
            self._store_upgraded = True
        return store

    def unmigrated_store(self) -> Store:
        """The store as it is, for commands that inspect or upgrade its schema."""
        if self._store is None:
            self._store = Store(self.resolved_store_url(), key=self.store_key())
        return self._store

    def store_key(self) -> str | None:
        """``TALPROV_STORE_KEY`` as every command takes it.

        A placeholder key (see :func:`~talprov.store.crypto.not_random_reason`) is
        refused unless the store holds records sealed with some key: an older
        talprov may have sealed them with this one before the rule existed, and
        refusing it then would lock them away, so it is used with one warning.
        Unencrypted records are no reason to take it (it would seal new ones). Raises
        :class:`ConfigError` naming the variable, never the key. Idempotent.
        """
        key = store_key_from(os.environ, placeholder_ok=True)
        reason = not_random_reason(key) if key is not None else None
        if reason is None:
            return key
        if not self._store_holds_sealed_records():
            return store_key_from(os.environ)  # refuses it, in the one refusal's words
        if not self._placeholder_warned:
            self._placeholder_warned = True
            say(f"warning: TALPROV_STORE_KEY is not random ({reason}); it is used because "
                "this store holds encrypted records, which an older talprov may have sealed "
                "with it. A new "
                f"store must get a random key ({KEY_HINT})", level=logging.WARNING)
        return key

    def _store_holds_sealed_records(self) -> bool:
        """Whether the store holds encrypted records, creating nothing: a SQLite
        file that is not there holds none."""
        url = self.resolved_store_url()
        if holds_no_file_yet(url):
            return False
        with Store(url) as probe:
            return probe.holds_sealed_records()

    def resolved_store_url(self) -> str:
        """--store, else the config's store, else SQLite under $XDG_STATE_HOME."""
        return self.store_url or self.config.config.store or default_store_url()

    def runtime_now(self) -> datetime:
        """Now on the runtime's clock, as the store records times."""
        return datetime.fromtimestamp(self.runtime.clock(), UTC)

    def provider(self, name: str) -> Provider:
        """The configured provider instance ``name`` (ConfigError when unknown)."""
        return self.handle(name).provider

    def handle(self, name: str) -> ProviderHandle:
        """Instance ``name``, built on first use (ConfigError when it cannot be);
        a command that asks for it uses it: see :meth:`_say_unverified_tls`."""
        built = self._built(name)
        self._say_unverified_tls(name)
        return built

    def _built(self, name: str) -> ProviderHandle:
        if name not in self._providers:
            block = self.config.provider_block(name)
            where = f"{self.config.path or 'config'}: providers.{name}"
            provider = build_provider(name, block, self.runtime, where=where)
            self._providers[name] = ProviderHandle(provider, instance_concurrency(block))
        return self._providers[name]

    def _say_unverified_tls(self, name: str) -> None:
        """Warn once per process that instance ``name`` does not verify TLS: by
        `config check`, `providers --health`, the `serve` log and every command that
        uses it, never by one that only builds it alongside (QA)."""
        if name in self._tls_said:
            return
        self._tls_said.add(name)
        off = unverified_tls(self.config.provider_block(name))
        if off is not None:
            say(f"warning: {tls_off_warning(f'provider instance {name}', off)}",
                level=logging.WARNING)

    def all_handles(self, used: Collection[str] | None = None) -> dict[str, ProviderHandle]:
        """Every configured instance that can be built now.

        One that cannot (an unset secret reference, a missing extra, settings its
        type refuses) is left out and noted in :attr:`unusable`, so that it does not
        stop work on the others; its requests wait, and `talprov config check`
        names the problem too. It is said in one warning when the command uses it:
        when it is in ``used`` (None: every instance is used, as by `reconcile`);
        an instance the command has no business with is not its warning (QA: `plan`
        warned about an instance its spec does not name). Idempotent.
        """
        for name in self.config.config.providers:
            if name not in self._providers and name not in self.unusable:
                try:
                    self._built(name)
                except ConfigError as exc:
                    self.unusable[name] = str(exc)
            if name in self._providers and (used is None or name in used):
                self._say_unverified_tls(name)
            if name in self.unusable and name not in self._unusable_said \
                    and (used is None or name in used):
                self._unusable_said.add(name)
                say(f"warning: provider instance {name} left out: {self.unusable[name]}",
                    level=logging.WARNING)
        return dict(self._providers)

    def reconciler(self, used: Collection[str] | None = None) -> Reconciler:
        """A reconciler over every instance that can be built; ``used`` as in
        :meth:`all_handles`."""
        return Reconciler(self.store, self.all_handles(used), self.runtime,
                          instance_backoff=self.instance_backoff)

    def run_loop(self, used: Collection[str] | None = None) -> RunLoop:
        """The library's run loop over every configured provider instance (what
        ``talprov serve``'s worker runs too); ``used`` as in :meth:`all_handles`."""
        return RunLoop(self.store, self.all_handles(used), self.runtime,
                       instance_backoff=self.instance_backoff)

    def listings(self) -> MachineListings:
        """Machine listings for a scaler of this command, under its instances'
        one backoff. Each caller gets its own (a round's answers are not shared
        between threads)."""
        return MachineListings(self.runtime.installation, self.runtime.clock,
                               self.instance_backoff)

    def close(self) -> None:
        """Close every provider this invocation built (best effort), then the store.

        A provider with a ``close()`` holds sessions on the far side (vCenter's two
        sessions, a Redfish session per BMC): left open they count against the
        endpoint's session limit until it expires them. A close that fails is
        logged at DEBUG and never hides the command's own outcome. Idempotent.
        """
        handles, self._providers = list(self._providers.values()), {}
        closers = [threading.Thread(target=_close_quietly, args=(handle.provider,),
                                    name="talprov-close", daemon=True)
                   for handle in handles if callable(getattr(handle.provider, "close", None))]
        for closer in closers:
            closer.start()
        # Side by side and bounded: an endpoint that does not answer (a dead BMC;
        # sushy sets no connect timeout) must not hold the command's exit.
        deadline = time.monotonic() + CLOSE_PROVIDERS_WITHIN
        for closer in closers:
            closer.join(max(0.0, deadline - time.monotonic()))
        if self._store is not None:
            self._store.close()


#: Seconds App.close waits for providers to log out before it leaves them.
CLOSE_PROVIDERS_WITHIN = 10.0


def _close_quietly(provider: object) -> None:
    """``provider.close()``; a failure is logged at DEBUG (logging out is best
    effort), by class name only: an SDK's message may quote what it sent."""
    try:
        provider.close()  # type: ignore[attr-defined]
    except Exception as exc:
        logging.getLogger(__name__).debug(
            "closing provider instance %s failed: %s",
            getattr(provider, "name", "?"), type(exc).__name__)


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "talprov"


def progress_printer() -> Callable[[str, int, int | None], None]:
    """A Progress that writes a compact line to stderr when it is a terminal."""
    last: dict[str, int] = {}

    def show(task: str, done: int, total: int | None) -> None:
        step = (total or 0) // 20 or 1 << 20
        if done == last.get(task) or (done - last.get(task, -step) < step and done != total):
            return  # said already (a driver may report the same count twice)
        last[task] = done
        if total:
            say(f"{task}: {done * 100 // total}% ({done}/{total} bytes)")
        else:
            say(f"{task}: {done} bytes")

    return show


def known_instance(app: App, name: str, *, where: str) -> str:
    """``name`` when talprov.yaml configures that provider instance.

    Raises ``ConfigError`` at ``where`` (the request or spec field that names it)
    otherwise, so the user is sent to the file that holds the typo; errors in the
    instance's own config block still name talprov.yaml. Idempotent.
    """
    configured = app.config.config.providers
    if name not in configured and app.config.path is None:
        raise ConfigError(where, f"unknown provider {name!r}: no config file found "
                                 f"({CONFIG_SEARCH})")
    if name not in configured:
        known = ", ".join(sorted(configured)) or "none configured"
        raise ConfigError(where, f"unknown provider {name!r} (configured in "
                                 f"{app.config.path}: {known})"
                                 + did_you_mean(name, list(configured)))
    return name


#: Where talprov looks for its config, in order (see talprov.config.find_config_file).
CONFIG_SEARCH = ("looked at --config, TALPROV_CONFIG, ./talprov.yaml, "
                 "$XDG_CONFIG_HOME/talprov/config.yaml")


def say(message: str, *, level: int = logging.INFO, request_id: str | None = None) -> None:
    """A status line for the user on stderr, shown whatever -v says, secrets masked.

    Plain text by default; under ``--log-format json`` a JSON log object (with
    ``request_id`` when given), so that every line on stderr parses.
    """
    handler = _cli_handler()
    if handler is None or not isinstance(handler.formatter, JsonFormatter):
        with STATUS_LINE.writing(sys.stderr):
            click.echo(redact(message), err=True)
        return
    record = logging.LogRecord("talprov.cli", level, __file__, 0, message, None, None)
    if request_id is not None:
        record.request_id = request_id
    handler.handle(record)


def _cli_handler() -> logging.Handler | None:
    return next((h for h in logging.getLogger().handlers if h.get_name() == CLI_HANDLER), None)


def json_logging() -> bool:
    """Whether stderr gets JSON log records (``--log-format json``), not plain lines."""
    handler = _cli_handler()
    return handler is not None and isinstance(handler.formatter, JsonFormatter)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one error line (secrets masked) and exit with ``code``."""
    if json_logging():
        say(message, level=logging.ERROR)
    else:
        click.echo(f"talprov: error: {redact(message)}", err=True)
    sys.exit(code)


def stdin_is_terminal() -> bool:
    """Whether a person can answer a question on stdin."""
    return sys.stdin.isatty()


def confirm_or_exit(question: str, yes: bool) -> None:
    """Go on when ``yes``; else ask on a terminal (exit 1 on "no"), and refuse
    with exit 2 naming --yes when stdin is not a terminal (a script cannot answer).
    ``question`` is a sentence ("Add 3 machines to ...?"); the refusal puts it
    mid-line, after ``talprov: error:``, so it starts in lower case there."""
    if yes:
        return
    if not stdin_is_terminal():
        asked = question.rstrip("?")
        fail(f"not asking whether to {asked[:1].lower()}{asked[1:]}: stdin is not a "
             "terminal; pass --yes")
    if not click.confirm(question, default=False, err=True):
        fail("nothing done", EXIT_FAILED)


def handle_errors(fn: F) -> F:
    """Turn expected errors into one line and the documented exit codes."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UnknownName as exc:
            fail(str(exc), EXIT_FAILED)
        except ConfigError as exc:
            fail(str(exc))
        except BeingDeleted as exc:  # the input is fine: its timing is not
            fail(str(exc), EXIT_FAILED)
        except Conflict as exc:
            fail(str(exc))
        except ClusterBusy as exc:
            fail(str(exc), EXIT_FAILED)
        except UnsupportedStore as exc:  # invalid input, as a bad option is
            fail(f"store: {exc}")
        except StoreError as exc:
            fail(f"store: {exc}", EXIT_FAILED)
        except InvalidRequest as exc:
            fail(str(exc))
        except ProviderError as exc:
            fail(describe_error(exc), EXIT_FAILED)

    return wrapper  # type: ignore[return-value]


#: How a person reads each kind of provider error (never a Python class name).
def setup_logging(verbose: int, log_format: str = "plain") -> None:
    """Log to stderr at WARNING (-v INFO, -vv DEBUG) in ``log_format`` (plain or
    json, see :mod:`talprov.logs`), secrets masked. Idempotent: replaces only its
    own handler."""
    level = logging.WARNING - 10 * min(verbose, 2)
    # A record from any thread ends a wait's progress line before its own.
    handler = make_handler(log_format, CLI_HANDLER, kind=LineEndingHandler)
    handler.addFilter(RedactingFilter())
    install_handler(handler)
    logging.getLogger().setLevel(level)
    # SDK loggers echo request bodies at debug level; bodies carry user-data.
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "keystoneauth",
                  "openstack", "proxmoxer", "requests", "pyVmomi", "sushy", "pyghmi", "uvicorn"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))
    # Alembic's INFO lines (four per command, and one per script) are its own
    # words; the store says an upgrade once, in talprov's. -vv shows them.
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    if verbose == 0:
        # keystoneauth warns of every endpoint it cannot discover, which talprov then
        # reports itself, once, in words (the health row, the request's error).
        logging.getLogger("keystoneauth").setLevel(logging.ERROR)
        logging.getLogger("sushy").setLevel(logging.ERROR)  # its session fallbacks too


pass_app = click.make_pass_decorator(App)
