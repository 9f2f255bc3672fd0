"""The child process of ``talprov serve`` that runs the reconcile loop.

:class:`talprov.service.worker_process.WorkerProcess` starts :func:`run_worker`
with the spawn method: it loads the same talprov.yaml and store as the parent
(``TALPROV_CONFIG``, secrets and ``TALPROV_STORE_KEY`` come with the
environment), builds every usable provider instance, and runs
:class:`talprov.runloop.RunLoop` rounds until the parent says stop, the parent
goes away, or SIGTERM arrives. Ctrl-C is the parent's to handle: the child
ignores SIGINT and stops when the parent tells it to.

A stop interrupts the round in the child's main thread (a ``Terminated``
raised there, as SIGTERM does in ``talprov reconcile --once``): the pass does
not wait for a cloud call that never returns. The requests still in a step keep
their leases, and a later talprov of this host takes them over at once
(:mod:`talprov.reconcile.stop_gate`); the others are given back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import FrameType

from talprov.cli.app import App, setup_logging
from talprov.reconcile.reconciler import ProviderHandle
from talprov.reconcile.stop_gate import Abandoned
from talprov.reconcile.work import STAGE_LOGGER
from talprov.runloop import RoundReport, RunLoop
from talprov.service.metrics import instrument
from talprov.service.worker_process import STOP, WAKE, PipeMetrics, unblock_child_signals
from talprov.stopping import Terminated

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerArgs:
    """What the child needs from the parent's command line and service block."""

    config_path: str | None
    store_url: str | None
    verbose: int
    log_format: str
    interval: float
    lease_ttl: float
    worker_id: str | None
    stop_timeout: float
    #: Steps of CPU priority below the parent (``service.worker_nice``).
    nice: int = 0


#: What ``ps`` shows for the child instead of multiprocessing's spawn command.
PROCESS_TITLE = "talprov serve: reconcile worker"


def _become_background(nice: int) -> None:
    """Lower this process's CPU priority by ``nice`` and set its title. Never raises:
    neither is needed for the work."""
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    try:
        import setproctitle
    except ImportError:  # optional: only the title is lost
        return
    setproctitle.setproctitle(PROCESS_TITLE)


def run_worker(args: WorkerArgs, conn: Connection) -> None:
    """The child's entry point: rounds until told to stop. Never raises."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM stays held (since the child started) until its handler is in place.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _become_background(args.nice)
    setup_logging(args.verbose, args.log_format)
    logging.getLogger(STAGE_LOGGER).setLevel(logging.INFO)
    app = App(args.config_path, args.store_url, verbose=args.verbose,
              log_format=args.log_format)
    sink = PipeMetrics(conn)
    try:
        handles = {
            name: ProviderHandle(instrument(handle.provider, name, sink), handle.concurrency)
            for name, handle in app.all_handles().items()
        }
        loop = RunLoop(app.store, handles, app.runtime, worker_id=args.worker_id,
                       lease_ttl=args.lease_ttl)
    except Exception as exc:  # the parent logs the exit and starts another child
        log.error("the reconcile worker could not start: %s", exc)
        app.close()
        raise SystemExit(1) from None

    stopper = _Stopper(loop, args.stop_timeout)
    signal.signal(signal.SIGTERM, stopper.interrupted)
    unblock_child_signals()
    threading.Thread(target=_listen, args=(conn, loop, stopper.told_to_stop),
                     name="talprov-worker-pipe", daemon=True).start()
    sink.send(("started", loop.worker_id))

    def note(report: RoundReport) -> None:
        for error in report.errors:
            log.warning("%s", error)
        sink.send(("round", report.seconds, report.failed,
                   loop.reconciler.instance_troubles()))

    try:
        loop.run_forever(interval=args.interval, on_round=note)
    except (Terminated, Abandoned):
        pass  # the stop: what the pass left is in the log (stop_gate)
    finally:
        stopper.closing.set()
        loop.close()
        app.close()
        logging.shutdown()
        os._exit(0)  # the stop timer must not keep a finished child alive


class _Stopper:
    """The child's stop: SIGTERM, or the parent's STOP or EOF on the pipe."""

    def __init__(self, loop: RunLoop, stop_timeout: float) -> None:
        self.loop = loop
        self.stop_timeout = stop_timeout
        self._stopping = threading.Event()
        self._raised = threading.Event()
        #: Set once the round is over: no interruption of the store's closing.
        self.closing = threading.Event()
        self._main = threading.main_thread().ident or 0

    def stop(self) -> None:
        """End the loop after its round; the first call starts the exit timer.
        Idempotent; never raises."""
        self.loop.stop()
        if self._stopping.is_set():
            return
        self._stopping.set()
        # A call in the main thread that no signal breaks off must not keep this
        # process alive forever; its leases are taken over (at once on this
        # host, see stop_gate).
        threading.Timer(self.stop_timeout, os._exit, args=(0,)).start()

    def interrupted(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGTERM's handler: raises Terminated in the main thread, once, unless
        the round is over already. As Ctrl-C in `reconcile --once`, the pass then
        waits for no cloud call that never returns; the requests still in a step
        keep their leases (talprov.reconcile.stop_gate), the others are given back."""
        self.stop()
        if not self._raised.is_set() and not self.closing.is_set():
            self._raised.set()
            raise Terminated()

    def told_to_stop(self) -> None:
        """The parent's STOP (or its going away), read in the pipe's thread: the
        signal carries it to the main thread, where the pass runs. Never raises."""
        self.stop()
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_kill(self._main, signal.SIGTERM)


def _listen(conn: Connection, loop: RunLoop, stop: Callable[[], None]) -> None:
    """Wake or stop the loop as the parent says; stop when the parent is gone."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            stop()
            return
        if message == WAKE:
            loop.wake()
        elif message == STOP:
            stop()
            return
