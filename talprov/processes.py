"""Which process is this, is another one on this host still alive, stopping
child processes, and SIGTERM stopping a command the way Ctrl-C does.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn


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


def _raise_terminated(_signum: int, _frame: object) -> None:
    # Once is enough: a second SIGTERM must not break off the clean-up (lease
    # releases) that the first one started; SIGKILL remains for a stuck process.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def stop_on_sigterm() -> None:
    """From now on, SIGTERM raises :class:`Terminated` in the main thread.

    Call from the main thread of a command-line entry point only (Python runs
    signal handlers there). Idempotent. A command that stops its own way on
    SIGTERM (``serve``) installs its handler over this one and restores it.
    """
    signal.signal(signal.SIGTERM, _raise_terminated)


def interrupted_exit_code(exc: BaseException) -> int:
    """128 + the signal that stopped a command, as shells expect: 143 for SIGTERM
    (:class:`Terminated`, also when it is the cause of ``exc``), else 130 (Ctrl-C)."""
    stopped_by_term = isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated)
    return 128 + (signal.SIGTERM if stopped_by_term else signal.SIGINT)


def exit_interrupted(exc: BaseException) -> NoReturn:
    """Say on stderr that the command was interrupted (and by SIGTERM, if so),
    then exit with :func:`interrupted_exit_code`. The one way every talprov
    command ends on Ctrl-C or SIGTERM: one line, never a traceback."""
    code = interrupted_exit_code(exc)
    by = " (SIGTERM)" if code == 128 + signal.SIGTERM else ""
    sys.stderr.write(f"talprov: interrupted{by}\n")
    sys.exit(code)


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
