"""``talprov autoscaler serve``: the Kubernetes Cluster Autoscaler's externalgrpc
cloud provider, on the autoscaled machine sets of recorded clusters."""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Any

import click

from talprov.cli.app import App, fail, handle_errors, pass_app, say
from talprov.logs import native_stderr_logged
from talprov.scaler.apply import Scaler
from talprov.stopping import STOP_SIGNALS, ignore_stop_signals


@click.group()
def autoscaler() -> None:
    """The Cluster Autoscaler's cloud provider (externalgrpc) for autoscaled sets."""


@autoscaler.command("serve")
@click.option("--listen", metavar="HOST:PORT",
              help="Address (default: service.autoscaler.listen, else 127.0.0.1:8086).")
@click.option("--cert", metavar="FILE", help="Server certificate (PEM).")
@click.option("--key", metavar="FILE", help="Server private key (PEM).")
@click.option("--ca", metavar="FILE",
              help="CA of the cluster-autoscaler's client certificate (PEM).")
@click.option("--plain", is_flag=True, default=None,
              help="No TLS; refused unless HOST is a loopback address.")
@click.option("--with-workers/--no-workers", default=False, show_default=True,
              help="Also run the run loop here (else `talprov serve`/`reconcile` runs it).")
@pass_app
@handle_errors
def serve_autoscaler(app: App, listen: str | None, cert: str | None, key: str | None,
                     ca: str | None, plain: bool | None, with_workers: bool) -> None:
    """Serve the CloudProvider gRPC service until SIGTERM or Ctrl-C.

    Mutual TLS by default: the cluster-autoscaler's --cloud-config names the CA
    and a client certificate this server's --ca signed. Options override the
    config's service.autoscaler block. Prints "autoscaler: gRPC on HOST:PORT" once ready.
    """
    where = f"{app.config.path or 'config'}: service.autoscaler"
    raw: dict[str, Any] = dict((app.config.config.service or {}).get("autoscaler") or {})
    if listen:
        raw["listen"] = listen
    if cert or key or ca:
        raw["tls"] = {"cert": cert, "key": key, "ca": ca}
    if plain is not None:
        raw["plain"] = plain
        if plain:
            raw.pop("tls", None)
    raw["enabled"] = True
    stop = threading.Event()

    def stopped(_signum: int, _frame: FrameType | None) -> None:
        ignore_stop_signals()  # the first stop counts; a second must not break it off
        stop.set()

    # Before the server starts: a SIGTERM or Ctrl-C just after "gRPC on" is the
    # normal stop (exit 0), not an interruption of the start (143, 130).
    previous = {signum: signal.signal(signum, stopped) for signum in STOP_SIGNALS}
    server = None
    try:
        server = start_autoscaler(app, raw, where=where)
        if with_workers:
            with app.run_loop() as loop:
                worker = threading.Thread(target=loop.run_forever, daemon=True,
                                          kwargs={"interval": 2.0})
                worker.start()
                _wait(stop)
                loop.stop()
                worker.join(30)
        else:
            _wait(stop)
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is stopped:  # else stopping: left ignored
                signal.signal(signum, handler)
        if server is not None:
            server.stop()
    say("autoscaler: stopped")


def start_autoscaler(app: App, raw: dict[str, Any] | None, *, where: str) -> Any:
    """Start the gRPC service of an enabled autoscaler block (None without one) and
    say where it listens. Raises ConfigError naming the field of a bad block."""
    if not raw or raw.get("enabled") is False:
        return None
    try:
        from talprov.autoscaler.config import parse_autoscaler_config
    except ImportError:
        fail("the autoscaler service needs grpcio and protobuf: "
             "pip install 'talprov[autoscaler]'")
    settings = parse_autoscaler_config(raw, where=where)
    server = settings.server(Scaler(app.store, app.all_handles(), app.runtime), where=where)
    routing = contextlib.ExitStack()
    # gRPC's C core writes its own lines (a refused TLS handshake) to stderr
    # directly; routed, they get talprov's format, level and redaction.
    routing.enter_context(native_stderr_logged("grpc"))
    try:
        port = server.start()
    except BaseException:
        routing.close()
        raise
    mode = "plain" if settings.tls is None else "mTLS"
    say(f"autoscaler: gRPC on {settings.host_port()[0]}:{port} ({mode})")
    return LoggedServer(server, routing)


class LoggedServer:
    """A started gRPC server whose native log lines go through logging until
    :meth:`stop`."""

    def __init__(self, server: Any, routing: contextlib.ExitStack) -> None:
        self._server = server
        self._routing = routing

    def stop(self) -> None:
        """Stop serving, then give stderr back. Idempotent."""
        try:
            self._server.stop()
        finally:
            self._routing.close()


def _wait(stop: threading.Event) -> None:
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        stop.set()
