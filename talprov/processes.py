"""Which process is this, is another one on this host still alive, and stopping
child processes.

Leases and import markers record ``host:pid`` so that a process on the same host
can tell at once that their holder was killed, instead of waiting out a timeout
meant for holders on other hosts.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any


def local_worker_id() -> str:
    """This process's lease identity: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def dead_local_worker(worker_id: str) -> bool:
    """Whether ``worker_id`` names a process on this host that no longer runs."""
    host, _, pid_text = worker_id.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        stat = Path(f"/proc/{pid_text}/stat").read_text()
    except OSError:
        return True
    # A zombie is dead even though its pid still exists.
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


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
