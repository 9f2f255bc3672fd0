"""``talprov serve``: the HTTP API and the reconcile workers in one process."""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Collection
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

import click

from talprov.cli.app import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    App,
    fail,
    handle_errors,
    pass_app,
    say,
    setup_logging,
)
from talprov.cli.autoscaler import start_autoscaler
from talprov.errors import ConfigError, did_you_mean
from talprov.reconcile.work import STAGE_LOGGER
from talprov.registry import require_extra
from talprov.service.config import ServiceConfig, is_loopback, parse_listen, parse_service_config
from talprov.stopping import ignore_stop_signals
from talprov.store.engine import is_memory_url

log = logging.getLogger(__name__)

#: Seconds an idle keep-alive connection stays open (uvicorn's default is 5).
KEEP_ALIVE_SECONDS = 75


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(f"--listen {host}:{port}: {exc.strerror}")
    sock.set_inheritable(True)
    return sock


class QueryStringFilter(logging.Filter):
    """Leaves the query string out of uvicorn's access log lines: a client that puts
    a token or another secret in a URL (``?token=...``) must not have it logged.
    The line keeps ``?...`` to show there was one."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn.access logs (client, method, path with query, HTTP version, status).
        args = record.args
        if isinstance(args, tuple) and len(args) > 2 and isinstance(args[2], str) \
                and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?...", *args[3:])
        return True


def token_scope_warnings(config: ServiceConfig, instances: Collection[str],
                         where: str) -> list[str]:
    """One warning per name in a token's scope that is no instance of ``instances``
    (the ``*`` wildcard aside), naming the instances configured and the one the
    name resembles: a typo there gives a token that silently sees nothing. A
    warning, not an error, because replicas sharing a store may each configure
    some of the instances. Said by ``serve`` at start and by ``config check`` (its
    service row's ``warning``). Pure."""
    known = sorted(instances)
    configured = ", ".join(known) or "none"
    return [f"{where}.tokens[{index}].providers: no provider instance named {name!r} here "
            f"(configured: {configured}){did_you_mean(name, known)}"
            for index, token in enumerate(config.tokens)
            for name in token.providers if name != "*" and name not in instances]


def _service_config(app: App, where: str, workers: bool | None,
                    worker_id: str | None) -> ServiceConfig:
    """The config's ``service`` block with the command line's overrides applied (and
    its log format in force unless --log-format chose one). Raises ``ConfigError``."""
    config = parse_service_config(app.config.service_block(), where=where)
    if workers is not None:
        config = config.model_copy(update={"workers": workers})
    if worker_id:
        config = config.model_copy(update={"worker_id": worker_id})
    if app.log_format is None and config.log_format != "plain":
        setup_logging(app.verbose, config.log_format)
    return config


@click.command()
@click.option("--listen", metavar="HOST:PORT",
              help="Address to serve on (default: the config's service.listen, "
                   "else 127.0.0.1:8080). Port 0 picks a free port.")
@click.option("--workers/--no-workers", default=None,
              help="Run the reconcile loop here (default: the config's service.workers).")
@click.option("--worker-id", envvar="TALPROV_WORKER_ID", metavar="ID",
              help="Lease identity of this replica (default: service.worker_id, else host:pid).")
@click.option("--insecure-http", is_flag=True, default=False,
              help="Serve plain HTTP on a non-loopback address (default: refused "
                   "unless service.tls is set or service.insecure_http is true).")
@click.option("--boot-server/--no-boot-server", default=True, show_default=True,
              help="Also run the boot server of each configured baremetal instance.")
@pass_app
@handle_errors
def serve(app: App, listen: str | None, workers: bool | None, worker_id: str | None,
          boot_server: bool, insecure_http: bool) -> None:
    """Serve the HTTP API (OpenAPI at /docs) and run the reconcile workers.

    With a bare-metal provider instance configured, its PXE boot server runs in
    this process too (--no-boot-server when `talprov baremetal serve` runs it).

    Several processes may share one PostgreSQL store: requests are split between
    them with leases. SIGTERM or Ctrl-C stops gracefully: the API stops taking
    connections (open ones finish), and the reconcile worker process interrupts
    its round at once: a request still in a step keeps its lease (a talprov
    started again on this host takes it over at once), the others are released.
    With service.worker_mode: thread the round is finished instead, for at most
    service.stop_timeout. Prints "listening on URL" on stderr once ready.

    Exit codes: 0 stopped by SIGTERM (also while starting); 130 stopped by
    Ctrl-C (SIGINT, also while starting), as every talprov command; either
    says "stopped"; 2 not started: an invalid config
    or option (the service block, no tokens, --listen, TLS files, plain HTTP
    refused), the same config `talprov config check` exits 2 for, or an address
    that cannot be bound; 1 not started: the store failed.

    \b
    Examples:
      talprov serve
      talprov serve --listen 127.0.0.1:8081 --worker-id "$(hostname)-api-1"
      talprov serve --no-workers
    """
    # SIGTERM is serve's stop also while it starts: the launcher (the console
    # script's, python -m's) said so for the process (sigterm_is_a_stop), which
    # exit_interrupted then honours.
    require_extra("service", where="talprov serve", what="the HTTP service")
    from talprov.service.app import create_app

    where = f"{app.config.path or 'config'}: service"
    config = _service_config(app, where, workers, worker_id)
    # One line per stage change of a request even without -v; the rest of INFO stays off.
    logging.getLogger(STAGE_LOGGER).setLevel(logging.INFO)
    # The scopes' warning first: it is said even when the start is then refused.
    for warning in token_scope_warnings(config, app.config.config.providers, where):
        say(f"warning: {warning}", level=logging.WARNING)
    host, port = check_startable(config, where, listen=listen, insecure_http=insecure_http)
    # The app (and its worker supervisor, which keeps this process's stderr for
    # its children) before the autoscaler, which routes fd 2 through logging.
    api = create_app(app.store, app.all_handles(), app.runtime, config,
                     spawn_worker=_worker_entry(app, config))
    grpc_server = start_autoscaler(app, config.autoscaler, where=f"{where}.autoscaler")
    try:
        server, sock, boot_servers = _prepared(app, config, api, host, port, boot_server)
    except KeyboardInterrupt:
        # Stopped while starting (before its signal handlers are in place): what
        # started stops, and the interruption ends as every command's does
        # (serve's SIGTERM with 0: sigterm_is_a_stop).
        if grpc_server is not None:
            grpc_server.stop()
        raise
    _run_until_stopped(server, sock, api.state.ctx.loop, boot_servers, grpc_server)


def _prepared(app: App, config: ServiceConfig, api: Any, host: str, port: int,
              boot_server: bool) -> tuple[Any, socket.socket, list[Any]]:
    """The uvicorn server of ``api`` (it says "listening" once started), the socket
    it is to serve, bound, and the boot servers, started. An address that cannot
    be bound ends the command (exit 2)."""
    import uvicorn

    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    scheme = "https" if config.tls else "http"
    shown_host = f"[{host}]" if ":" in host else host
    uv_config = uvicorn.Config(
        api,
        log_config=None,  # keep talprov's handlers, which redact secrets
        access_log=True,
        ssl_certfile=config.tls.cert if config.tls else None,
        ssl_keyfile=config.tls.key if config.tls else None,
        timeout_graceful_shutdown=max(1, round(config.stop_timeout)),
        server_header=False,
        # Longer than the idle timeout of clients and load balancers in front
        # (an AWS ALB's is 60 s): a server that closes an idle connection first
        # races the client's next request on it, which then fails half-sent.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    server = uvicorn.Server(uv_config)
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QueryStringFilter) for f in access_log.filters):
        access_log.addFilter(QueryStringFilter())
    original_startup = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await original_startup(sockets=sockets)
        say(f"listening on {scheme}://{shown_host}:{bound_port}")
        sys.stderr.flush()

    server.startup = startup  # type: ignore[method-assign]
    server.handle_exit = _first_stop_only(server)  # type: ignore[method-assign,assignment]
    boot_servers = start_boot_servers(app) if boot_server else []
    return server, sock, boot_servers


def _first_stop_only(server: Any) -> Callable[[int, FrameType | None], None]:
    """uvicorn's signal handler for ``server``, taking the first SIGINT or SIGTERM
    only: a second one (Ctrl-C, then a SIGTERM ms later) would force uvicorn's exit,
    cancelling its lifespan with a logged traceback and changing the exit code. The
    graceful stop needs no forcing: ``stop_timeout`` bounds it."""
    handle_exit = server.handle_exit

    def first_only(signum: int, frame: FrameType | None) -> None:
        if not server.should_exit:
            handle_exit(signum, frame)

    return first_only


def _run_until_stopped(server: Any, sock: socket.socket, loop: Any,
                       boot_servers: list[Any], grpc_server: Any) -> None:
    """Serve on ``sock`` until SIGTERM or SIGINT, stop the boot servers and the
    autoscaler, then exit: 0 after SIGTERM, 130 after SIGINT (Ctrl-C), without
    waiting for a reconcile ``loop`` still stuck in its pass."""
    # uvicorn shuts down gracefully on SIGTERM and SIGINT, then re-raises the
    # signal with the previous handler in place; a handler there that only notes
    # it makes both stops end the same way below: SIGTERM exits 0, SIGINT 130.
    stops: list[int] = []

    def noted(signum: int, _frame: FrameType | None) -> None:
        stops.append(signum)
        # Before uvicorn takes the signals it does not know of this one: told
        # here, it stops at once after its start-up (it exits 0 too).
        server.should_exit = True

    previous = {sig: signal.signal(sig, noted) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        if stops:
            # Stopping already: a second signal (Ctrl-C, then a SIGTERM ms later)
            # must not break off the stop of the boot servers with a traceback.
            ignore_stop_signals()
        else:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        for boot in boot_servers:
            boot.stop()
        if grpc_server is not None:
            grpc_server.stop()
    code = EXIT_INTERRUPTED if signal.SIGINT in stops else EXIT_OK
    if loop is not None and loop.running:
        # A provider call that never returns holds the pass, and the interpreter
        # would wait for its thread forever at exit. Its leases are no longer
        # renewed, so another replica takes the requests over after lease_ttl.
        say("stopped (a reconcile pass was still running; not waiting for it)")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    say("stopped")
    if code != EXIT_OK:
        sys.exit(code)


def _worker_entry(app: App, config: ServiceConfig) -> Callable[[Connection], None] | None:
    """The child process's entry point when the reconcile loop runs in one; None
    for a thread (``worker_mode: thread``, or an in-memory store, which a child
    process would not see)."""
    if not config.workers or config.worker_mode == "thread":
        return None
    if is_memory_url(app.resolved_store_url()):
        log.info("the store is in memory: the reconcile loop runs in a thread")
        return None
    # Here, not at the top: the worker imports the service extra's packages,
    # and every other command must load without them.
    from talprov.cli.serve_worker import WorkerArgs, run_worker

    args = WorkerArgs(
        config_path=app.config_path, store_url=app.store_url, verbose=app.verbose,
        log_format=app.log_format or config.log_format, interval=config.reconcile_interval,
        lease_ttl=config.lease_ttl, worker_id=config.worker_id,
        stop_timeout=config.stop_timeout, nice=config.worker_nice,
    )
    return functools.partial(run_worker, args)


def check_startable(config: ServiceConfig, where: str, *, listen: str | None = None,
                    insecure_http: bool = False, warn: bool = True) -> tuple[str, int]:
    """What ``serve`` refuses to start with, also checked by ``config check``: no
    tokens, a bad ``--listen``, TLS files that do not load, plain HTTP on a
    routable address without ``insecure_http`` (warned about, with ``warn``, when
    allowed). Returns the address to bind. Raises ``ConfigError`` naming the
    field or flag. Reads the TLS files; otherwise pure."""
    if not config.tokens:
        raise ConfigError(f"{where}.tokens",
                          "no tokens configured; every API call would be refused")
    # An empty --listen is a mistake, not "use the config's": it is checked too.
    host, port = parse_listen(listen) if listen is not None else config.host_port()
    if config.tls is not None:
        _check_tls_files(config.tls.cert, config.tls.key, where=f"{where}.tls")
    elif not is_loopback(host):
        # The error names where the address came from: the flag or the file.
        _refuse_or_warn_plain_http(
            host, insecure=insecure_http or config.insecure_http, warn=warn,
            where="--listen" if listen is not None else f"{where}.listen")
    return host, port


def _refuse_or_warn_plain_http(host: str, *, insecure: bool, warn: bool, where: str) -> None:
    """Plain HTTP on the routable address ``host``: bearer tokens and machine
    configs would cross the network readable by anyone on the path. Refused
    (``ConfigError``) unless the operator said ``insecure``; then logged."""
    if not insecure:
        raise ConfigError(where, f"refusing plain HTTP on {host}, which is not a loopback "
                          "address; set service.tls, or pass --insecure-http "
                          "(service.insecure_http: true) behind a TLS-terminating proxy")
    if warn:
        # One line, as every other start-up warning of serve: a log record (JSON under
        # --log-format json) or a "warning:" line, not both.
        say(f"warning: plain HTTP on {host} (--insecure-http): tokens and machine configs "
            "are not encrypted in transit", level=logging.WARNING)


def _check_tls_files(cert: str, key: str, *, where: str) -> None:
    """Load the certificate and key once so that a bad path or a key that does not
    fit the certificate stops ``serve`` with a message naming the field, before
    anything is served. Raises ``ConfigError``. Idempotent."""
    for field, path in (("cert", cert), ("key", key)):
        if not os.path.isfile(path):
            raise ConfigError(f"{where}.{field}", f"{path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        # The reason only (e.g. KEY_VALUES_MISMATCH); never the file's content.
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        raise ConfigError(where, f"cannot use {cert} with {key}: {reason}") from None


def start_boot_servers(app: App) -> list[Any]:
    """Start the PXE boot server of every bare-metal instance; fail on a taken port."""
    started: list[Any] = []
    for name, handle in app.all_handles().items():
        if handle.provider.type_name != "baremetal":
            continue
        from talprov.baremetal.boot.server import BootServer
        from talprov.baremetal.provider import BareMetalProvider

        assert isinstance(handle.provider, BareMetalProvider)
        boot = BootServer(handle.provider.config, app.runtime.factory_url,
                          factory_auth=app.runtime.factory_auth,
                          factory_verify=app.runtime.factory_verify_tls)
        try:
            handle.provider.config.check_boot_files()
            boot.start()
        except ConfigError as exc:
            for other in started:
                other.stop()
            fail(f"providers.{name}.{exc}")
        except OSError as exc:
            for other in started:
                other.stop()
            fail(f"providers.{name}: cannot start the boot server: {exc}")
        say(f"{name}: boot server up; machines use {boot.config.boot_url}")
        started.append(boot)
    return started
