"""Which process is this, is another one on this host still alive, stopping
child processes, and SIGINT or SIGTERM stopping a command once, cleanly.

Leases and import markers record ``host:pid`` so that a process on the same host
can tell at once that their holder was killed, instead of waiting out a timeout
meant for holders on other hosts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

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


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (a service manager's stop, a CI or Kubernetes timeout).

    A KeyboardInterrupt, so that every ``except KeyboardInterrupt`` and ``finally``
    that gives leases back on Ctrl-C does the same on SIGTERM.
    """


#: The signals that stop a command: Ctrl-C and a service manager's stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _stop(signum: int, _frame: object) -> None:
    # The first of the two is the one that counts: from now on both are ignored,
    # so that a second one (Ctrl-C then a CI's SIGTERM ms later, or Ctrl-C twice)
    # cannot break off the clean-up (lease releases, closing connections) that the
    # first one started with a traceback of its own, nor change its exit code.
    # SIGKILL remains for a stuck process.
    ignore_stop_signals()
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def stop_on_signals() -> None:
    """From now on, the first SIGINT raises KeyboardInterrupt and the first SIGTERM
    :class:`Terminated` in the main thread; either one ignores both afterwards.

    Call from the main thread of a command-line entry point only (Python runs
    signal handlers there). Idempotent. A command that stops its own way
    (``serve``) installs its handlers over these and restores them.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)


def ignore_stop_signals(*, for_exit: bool = False) -> None:
    """Ignore SIGINT and SIGTERM from now on: a process that is stopping already,
    or whose command has ended, has nothing left that a signal could stop, and a
    handler that raised then would break off the clean-up with a traceback. A
    wait's deadline (:func:`abandon_after`) is let go too. Main thread only;
    idempotent.

    Ignored by a handler that does nothing, not by SIG_IGN: a signal that came
    with the first one, before its handler ran, is still pending, and CPython
    reports a pending signal whose handler became SIG_IGN on stderr ("Signal 15
    ignored due to race condition"). ``for_exit``: SIG_IGN after all, for the
    interpreter's exit, which puts SIG_DFL back in place of Python handlers (a
    signal then would kill the process by that signal).
    """
    ignored = signal.SIG_IGN if for_exit else _already_stopping
    for signum in (*STOP_SIGNALS, signal.SIGALRM):
        signal.signal(signum, ignored)


def _already_stopping(_signum: int, _frame: object) -> None:
    """The handler of a stop signal while the process stops already: nothing."""


class DeadlinePassed(BaseException):
    """A wait's deadline came while its work was still running (see
    :func:`abandon_after`). A BaseException, as KeyboardInterrupt is: no ``except
    Exception`` of the work catches it, and its ``finally`` blocks (lease
    releases) run as they run for Ctrl-C."""


def _deadline(_signum: int, _frame: object) -> None:
    # As a stop signal's: once the work is being unwound, Ctrl-C or SIGTERM must
    # not break off its clean-up (abandon_after puts their handlers back after).
    ignore_stop_signals()
    raise DeadlinePassed()


def abandon_after(seconds: float, work: Callable[[], T], otherwise: T) -> T:
    """``work()``, or ``otherwise`` when it is still running ``seconds`` (wall
    time) from now: it is then broken off in the main thread by SIGALRM, the way
    Ctrl-C breaks off a command (its ``finally`` blocks run, leases are given
    back). What the work runs in other threads is not broken off, nor waited
    for: the reconciler's and the drivers' pools (:mod:`talprov.daemon_pool`)
    leave a call that does not return running in a daemon thread, whose
    request keeps its lease (:mod:`talprov.reconcile.stopping`).

    Main thread only (elsewhere ``work()`` runs unbounded). SIGINT and SIGTERM
    are ignored while the work is unwound, then their handlers are put back.
    Raises what ``work`` raises.
    """
    if threading.current_thread() is not threading.main_thread():
        return work()
    kept = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    kept_alarm = signal.signal(signal.SIGALRM, _deadline)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
            return work()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, kept_alarm)
    except DeadlinePassed:
        # Unwound: from now on Ctrl-C and SIGTERM stop the command again.
        for signum, handler in kept.items():
            if handler is not None:
                signal.signal(signum, handler)
        return otherwise


def interrupted_exit_code(exc: BaseException) -> int:
    """128 + the signal that stopped a command, as shells expect: 143 for SIGTERM
    (:class:`Terminated`, also when it is the cause of ``exc``), else 130 (Ctrl-C)."""
    stopped_by_term = isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated)
    return 128 + (signal.SIGTERM if stopped_by_term else signal.SIGINT)


def interrupted_message(exc: BaseException, what: str | None = None) -> str:
    """``talprov: interrupted``, with `` (SIGTERM)`` when SIGTERM stopped the
    command, and ``: what`` when given (what a ``--wait`` leaves recorded)."""
    by = " (SIGTERM)" if interrupted_exit_code(exc) == 128 + signal.SIGTERM else ""
    return f"talprov: interrupted{by}" + (f": {what}" if what else "")


def end_echoed_line(exc: BaseException, *, line_open: bool = False) -> None:
    """Before the interruption's line: end the last line of a terminal that has
    something on it, the ``^C`` it echoed for Ctrl-C or a progress line written
    in place (``line_open``). A log or a pipe gets no blank line."""
    ctrl_c = interrupted_exit_code(exc) == 128 + signal.SIGINT
    if (line_open or ctrl_c) and _stderr_is_terminal():
        sys.stderr.write("\n")


#: The commands whose normal stop is SIGTERM (a service manager's): exit 0.
SIGTERM_STOPPED_COMMANDS = frozenset({"serve"})
#: Global options of ``talprov`` that take a value (``--config FILE``).
_VALUED_OPTIONS = frozenset({"--config", "--store", "--log-format"})
#: The command of this process, once known to stop on SIGTERM (at most one).
_stopped_by_sigterm: set[str] = set()


def command_word(argv: list[str]) -> str | None:
    """The command a ``talprov`` command line runs (its first word after the
    global options), or None. For the start-up, before click has parsed the
    line; a guess that errs towards None (then SIGTERM is an interruption).
    Pure."""
    args = iter(argv)
    for arg in args:
        if arg == "--":
            return next(args, None)
        if arg in _VALUED_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def sigterm_is_a_stop(command: str | None) -> None:
    """From now on, when ``command`` is one of :data:`SIGTERM_STOPPED_COMMANDS`, a
    SIGTERM that :func:`exit_interrupted` ends (while it starts up, even before it
    said it listens) is its graceful stop: "stopped", exit 0, not 143. For the
    process's entry point only (it holds for the rest of the process, and an
    in-process test runs several commands). Idempotent."""
    if command in SIGTERM_STOPPED_COMMANDS:
        _stopped_by_sigterm.add(command)


def exit_interrupted(exc: BaseException, *, line_open: bool = False) -> NoReturn:
    """Say :func:`interrupted_message` on stderr (on a line of its own, see
    :func:`end_echoed_line`), then exit with :func:`interrupted_exit_code`. The one
    way every talprov command ends on Ctrl-C or SIGTERM: one line, never a
    traceback. A command whose normal stop is SIGTERM (:func:`sigterm_is_a_stop`)
    says "stopped" and exits 0 instead."""
    end_echoed_line(exc, line_open=line_open)
    if _stopped_by_sigterm and interrupted_exit_code(exc) == 128 + signal.SIGTERM:
        sys.stderr.write("stopped\n")
        sys.stderr.flush()
        sys.exit(0)
    sys.stderr.write(interrupted_message(exc) + "\n")
    sys.stderr.flush()
    sys.exit(interrupted_exit_code(exc))


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


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
