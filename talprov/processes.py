"""Which process is this, is another one on this host still alive, stopping
child processes, and a wait broken off at its deadline (:func:`abandon_after`).
SIGINT and SIGTERM stopping a command are :mod:`talprov.stopping`'s.

Leases and import markers record ``host:pid`` so that a process on the same host
can tell at once that their holder was killed, instead of waiting out a timeout
meant for holders on other hosts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from talprov.stopping import STOP_SIGNALS, defer_stops, end_deferring

T = TypeVar("T")


def local_worker_id() -> str:
    """This process's lease identity: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def dead_local_worker(worker_id: str) -> bool:
    """Whether ``worker_id`` names a process on this host that no longer runs.

    A lease owner may add ``/...`` after ``host:pid`` (a cluster change's owner
    does); the process is the part before it.
    """
    host, _, pid_text = worker_id.split("/", 1)[0].rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        stat = Path(f"/proc/{pid_text}/stat").read_text()
    except OSError:
        return True
    # A zombie is dead even though its pid still exists.
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def take_over_if_dead(holder: str | None, *, release: Callable[[str], object],
                      claim: Callable[[], bool]) -> bool:
    """After a claim was refused: take the lease over when its ``holder`` (owner
    id, None when nobody holds it any more) is a process of this host that no
    longer runs, rather than wait out its TTL. ``release(holder)`` gives the lease
    back only as that owner, so of two processes taking over at once ``claim()``
    lets one win. The one rule for request leases and cluster leases.

    Returns what ``claim()`` returns; False without calling either when a live
    process, or one on another host, holds it. Raises what they raise.
    """
    if holder is not None:
        if not dead_local_worker(holder):
            return False
        release(holder)
    return claim()


class DeadlinePassed(BaseException):
    """A wait's deadline came while its work was still running (see
    :func:`abandon_after`). A BaseException, as KeyboardInterrupt is: no ``except
    Exception`` of the work catches it, and its ``finally`` blocks (lease
    releases) run as they run for Ctrl-C."""


def abandon_after(seconds: float, work: Callable[[], T], otherwise: T) -> T:
    """``work()``, or ``otherwise`` when it is still running ``seconds`` (wall
    time) from now: it is then broken off in the main thread by SIGALRM, the way
    Ctrl-C breaks off a command (its ``finally`` blocks run, leases are given
    back). What the work runs in other threads is not broken off, nor waited
    for: the reconciler's and the drivers' pools (:mod:`talprov.daemon_pool`)
    leave a call that does not return running in a daemon thread, whose
    request keeps its lease (:mod:`talprov.reconcile.stop_gate`).

    Main thread only (elsewhere ``work()`` runs unbounded). A SIGINT or SIGTERM
    while the work is unwound does not break the unwinding off: it is deferred,
    then raised (KeyboardInterrupt, :class:`~talprov.stopping.Terminated`) once
    the stop handlers are back, with both signals ignored from then on as after
    any stop. Raises that, or what ``work`` raises.
    """
    if threading.current_thread() is not threading.main_thread():
        return work()
    fired: list[bool] = []

    def deadline(_signum: int, _frame: object) -> None:
        # As for a stop: once the work is being unwound, Ctrl-C or SIGTERM must
        # not break off its clean-up. Deferred, not ignored: raised below once
        # the work is unwound (ignored, it was lost: the command went on). The
        # timer is a one-shot: no second alarm comes before it is disarmed.
        fired.append(True)
        defer_stops()
        raise DeadlinePassed()

    kept = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    kept_alarm = signal.signal(signal.SIGALRM, deadline)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
            return work()
        finally:
            # Disarmed first thing: an alarm that comes with the work's end is
            # raised here, inside the except below.
            signal.setitimer(signal.ITIMER_REAL, 0)
    except DeadlinePassed:
        return otherwise
    finally:
        signal.signal(signal.SIGALRM, kept_alarm)
        if fired:
            # Unwound (also when the work ate DeadlinePassed): from now on Ctrl-C
            # and SIGTERM stop the command again. Put back first, then the
            # deferred stop, which wins over the result: a signal between the
            # two is raised by its handler, none is dropped.
            end_deferring(kept)


def stop_process(process: subprocess.Popen[Any] | None, timeout: float = 5.0) -> None:
    """Terminate ``process``, kill it if it outlives ``timeout`` seconds, reap it.

    Idempotent: a process already gone (or ``None``) is left as it is. Never raises
    for a process that exits on its own meanwhile.
    """
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
