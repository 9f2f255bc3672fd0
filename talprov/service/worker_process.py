"""The service's reconcile loop in a child process, so that it cannot starve the API.

CPython runs one thread of a process at a time. With the run loop in a thread of
``serve`` (:class:`talprov.service.workers.ReconcileLoop`), every round that
renders configs, waits on SDK parsing or writes the store takes the interpreter
away from the API's handlers, and the API's latency grows with the reconcile
work. In a child process the operating system shares the CPUs instead.

:class:`WorkerProcess` starts the child with ``multiprocessing``'s *spawn*
method (no inherited threads or open store connections), tells it to wake or
stop over a pipe, and takes from it what the API shows about the work: step
durations, provider errors, leftovers swept and rounds go into this process's
:class:`~talprov.service.metrics.Metrics`; the instances the child's reconciler
backs off from answer :meth:`WorkerProcess.instance_troubles`. What the child
runs is the caller's (``talprov serve`` passes
:func:`talprov.cli.serve_worker.run_worker`); it speaks :data:`Message`\\ s
through :class:`PipeMetrics`.

A child that dies (killed, out of memory) is started again after a backoff that
doubles from 1 s to 30 s; the leases it held expire after ``lease_ttl`` unless
the new child has the same ``worker_id``. The child stops by itself when this
process goes away (its end of the pipe sees EOF).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import DupFd
from typing import Any

from talprov.reconcile.instance_health import InstanceTrouble
from talprov.service.metrics import Metrics

log = logging.getLogger(__name__)

#: A message from the child: ``("started", worker_id)``, ``("step", instance,
#: step, seconds)``, ``("error", instance, operation, error_class)``, ``("swept",
#: instance, kind)`` or ``("round", seconds, failed, troubles)``.
Message = tuple[Any, ...]
#: What the parent sends: ``"wake"`` or ``"stop"``.
WAKE, STOP = "wake", "stop"

FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
#: A child that ran this long before it died starts the backoff afresh.
STABLE_SECONDS = 60.0
#: How long a child that a signal stopped (exit 0, SIGTERM, SIGINT) waits for
#: this process to stop too before it counts as a death: systemd, ``timeout``
#: and ``kill -- -PGID`` signal the whole group, and the child may end first.
SIGNALLED_GRACE = 10.0
#: Signals a child keeps blocked until its entry point handles them: a Ctrl-C
#: during its interpreter's start printed a KeyboardInterrupt traceback.
CHILD_BLOCKED_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


class PipeMetrics:
    """The child's side: what an instrumented provider reports, sent to the parent.

    Implements :class:`talprov.service.metrics.StepMetrics`. Thread-safe (the
    runner's worker threads report at once). A parent that is gone is ignored
    here; the child's reader sees the EOF and stops the loop.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: Message) -> None:
        """Send ``message`` (picklable values only). Never raises."""
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._conn.send(message)

    def observe_step(self, provider: str, step: str, seconds: float) -> None:
        self.send(("step", provider, step, seconds))

    def count_error(self, provider: str, operation: str, error: str) -> None:
        self.send(("error", provider, operation, error))

    def count_swept(self, provider: str, kind: str) -> None:
        self.send(("swept", provider, kind))


class WorkerProcess:
    """Supervises the child that runs the reconcile loop; same face as ReconcileLoop.

    ``target(conn)`` is the child's entry point, picklable (a module-level
    function or a ``functools.partial`` of one); it must return when it reads
    :data:`STOP` or EOF from ``conn`` and must report through :class:`PipeMetrics`.
    """

    def __init__(self, target: Callable[[Connection], None], *, metrics: Metrics,
                 worker_id: str | None = None) -> None:
        self._target = target
        self.metrics = metrics
        self._worker_id = worker_id
        self._troubles: dict[str, InstanceTrouble] = {}
        self._lock = threading.Lock()
        self._wake_lock = threading.Lock()
        self._waking = self._wake_again = False
        self._conn: Connection | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._ready = threading.Event()
        self.restarts = 0
        # The stderr this process has now: a child started later (a restart)
        # writes its log there too, even if fd 2 has been redirected since (the
        # autoscaler routes gRPC's native stderr lines through logging).
        self._stderr = os.dup(2)

    # -- the face the API uses -----------------------------------------------------

    @property
    def worker_id(self) -> str:
        """The child's lease identity once it reported it (else the configured one)."""
        return self._worker_id or "starting"

    def instance_troubles(self) -> dict[str, InstanceTrouble]:
        """The child's instances whose listing failed in its last round. Never raises."""
        with self._lock:
            return dict(self._troubles)

    def wake(self) -> None:
        """Ask the child to run its next round now. Idempotent; never raises.

        Wakes that come while another caller sends one are folded into one more
        send after it: under load every create wakes the child, and a pipe write
        per create (each pickled, each taking the send lock) cost the API more
        than the child gains from all but one of them. No wake is lost: every
        call is followed by a send that starts after it.
        """
        with self._wake_lock:
            if self._waking:
                self._wake_again = True
                return
            self._waking = True
        while True:
            self._send(WAKE)
            with self._wake_lock:
                if not self._wake_again:
                    self._waking = False
                    return
                self._wake_again = False

    @property
    def running(self) -> bool:
        """Whether the supervisor (and so a child, or its restart) is still alive."""
        return self._supervisor is not None and self._supervisor.is_alive()

    def start(self, ready_timeout: float = 60.0) -> None:
        """Start the child and its supervisor thread, and wait until the child has
        loaded the config and built its providers (at most ``ready_timeout``
        seconds; after that the API serves anyway and a warning says so), so
        that a server that says it listens also reconciles. Idempotent."""
        if self._supervisor is not None:
            return
        self._supervisor = threading.Thread(target=self._supervise,
                                            name="talprov-reconcile-supervisor", daemon=True)
        self._supervisor.start()
        if not self._ready.wait(ready_timeout):
            log.warning("the reconcile worker process has not started within %.0f s; "
                        "the API serves meanwhile", ready_timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Tell the child to stop (it interrupts its round: see
        :mod:`talprov.cli.serve_worker`) and exit; wait at most ``timeout`` s.

        Returns False when it is still running then: it stops by itself once this
        process exits; a later talprov of this host takes its leases over at
        once, one elsewhere after ``lease_ttl``. Idempotent; never raises.
        """
        self._stopping.set()
        self._send(STOP)
        if self._supervisor is None:
            return True
        self._supervisor.join(timeout)
        if self._supervisor.is_alive():
            return False
        self.close()
        return True

    # -- supervision ---------------------------------------------------------------

    def _send(self, message: str) -> None:
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            # A child that is gone cannot be told; the supervisor starts another.
            with contextlib.suppress(OSError, ValueError):
                conn.send(message)

    def _supervise(self) -> None:
        # A spawned child inherits this thread's signal mask through fork and exec:
        # it starts with Ctrl-C and SIGTERM held, and takes them when its entry
        # point is ready for them (unblock_child_signals).
        signal.pthread_sigmask(signal.SIG_BLOCK, CHILD_BLOCKED_SIGNALS)
        spawn = multiprocessing.get_context("spawn")
        delay = FIRST_RESTART_DELAY
        while not self._stopping.is_set():
            ours, theirs = spawn.Pipe()
            child = spawn.Process(target=_run_child,
                                  args=(self._target, theirs, _ParentFd(self._stderr)),
                                  name="talprov-reconcile", daemon=True)
            started = time.monotonic()
            child.start()
            theirs.close()  # so that the child's death is an EOF here
            with self._lock:
                self._conn = ours
            if self._stopping.is_set():
                self._send(STOP)  # stop() came while the child was starting
            self._relay(ours)
            child.join()
            with self._lock:
                self._conn = None
                self._troubles = {}
            ours.close()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > STABLE_SECONDS:
                delay = FIRST_RESTART_DELAY
            if child.exitcode in (0, -signal.SIGTERM, -signal.SIGINT):
                if self._stopping.wait(SIGNALLED_GRACE):
                    return  # the group's stop reached the child first
                log.warning("the reconcile worker process was stopped by a signal, not by "
                            "serve; starting another in %.0f s", delay)
            else:
                log.error("the reconcile worker process exited (code %s); starting another "
                          "in %.0f s", child.exitcode, delay)
            self.restarts += 1
            self._stopping.wait(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)

    def close(self) -> None:
        """Give back the duplicate of stderr kept for children (:meth:`stop` does
        once the child is gone). Idempotent."""
        if self._stderr >= 0:
            with contextlib.suppress(OSError):
                os.close(self._stderr)
            self._stderr = -1

    def _relay(self, conn: Connection) -> None:
        """Apply the child's messages until its end closes."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            self._apply(message)

    def _apply(self, message: Message) -> None:
        kind = message[0]
        if kind == "step":
            self.metrics.observe_step(message[1], message[2], message[3])
        elif kind == "error":
            self.metrics.count_error(message[1], message[2], message[3])
        elif kind == "swept":
            self.metrics.count_swept(message[1], message[2])
        elif kind == "round":
            self.metrics.note_pass(message[1], failed=message[2])
            with self._lock:
                self._troubles = dict(message[3])
        elif kind == "started":
            self._worker_id = message[1]
            self._ready.set()


def unblock_child_signals() -> None:
    """In a child, once its handlers for SIGINT and SIGTERM are in place: take the
    signals that were held since it started (one that came meanwhile is handled now)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, CHILD_BLOCKED_SIGNALS)


class _ParentFd:
    """A file descriptor of this process for a spawned child. It is pickled only by
    ``Process.start``, when multiprocessing passes descriptors to the child; the
    child receives the descriptor's number there."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Callable[[Any], int], tuple[Any]]:
        return _detached, (DupFd(self.fd),)


def _detached(duplicate: Any) -> int:
    return int(duplicate.detach())


def _run_child(target: Callable[[Connection], None], conn: Connection, stderr: int) -> None:
    """In the child: put the parent's stderr (as it was when the supervisor was
    made) on fd 2, then run ``target``."""
    os.dup2(stderr, 2)
    os.close(stderr)
    target(conn)
