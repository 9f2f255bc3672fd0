"""What every platform of ``talprov demo`` shares: its interface, its table row, and
how an emulator process is started, trusted and stopped (the tests' emulator
fixtures in ``tests/emulators/`` start theirs with the same functions)."""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from talprov.processes import stop_process
from talprov.store.records import RequestRecord

START_TIMEOUT = 20.0
#: Columns of the demo's table, the same for every platform.
COLUMNS = ("platform", "request", "set", "stage", "machine", "where", "address", "state",
           "config", "check")


class DemoPlatform(Protocol):
    """One platform of the demo, its emulator already running."""

    name: str
    provider: str

    def provider_block(self) -> dict[str, Any]:
        """This platform's provider instance block for talprov.yaml."""

    def machine_class(self) -> dict[str, Any]:
        """The MachineClass document (named ``<name>-small``) of the cluster spec."""

    def verify(self, records: list[RequestRecord]) -> list[dict[str, Any]]:
        """One table row per record, with ``ok`` telling whether the platform got it right."""

    def stop(self) -> None:
        """Stop the emulator. Idempotent."""

    def keep_hint(self) -> str:
        """Where the kept emulator listens and how to log in to it."""

    def pid(self) -> int:
        """The emulator's process id."""


@dataclass
class EmulatorProcess:
    """An emulator running as a child process, its output in ``log``."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers). Idempotent."""
        stop_process(self.process)


def start_emulator(name: str, command: list[str], log: Path, ready: str,
                   env: Mapping[str, str] | None = None) -> tuple[EmulatorProcess, str]:
    """Start ``command`` and wait for the output line starting with ``ready``.

    Returns the process and the rest of that line. Its output goes to ``log``
    (not a pipe nobody reads, which would stall it once full). Proxy variables
    are left out of its environment: an emulator talks to 127.0.0.1 only.
    Raises ``RuntimeError`` when it exits or is not ready within START_TIMEOUT
    seconds; the process is stopped then.
    """
    environment = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env={**environment, **(env or {})})
    running = EmulatorProcess(name, process, log)
    try:
        line = wait_for_line(running, ready)
    except BaseException:  # also Ctrl-C while waiting: never leave it running
        running.stop()
        raise
    return running, line


def wait_for_line(running: EmulatorProcess, ready: str) -> str:
    """The rest of the first output line of ``running`` that starts with ``ready``.

    Raises ``RuntimeError`` when the process exits first or after START_TIMEOUT
    seconds (the caller stops it).
    """
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        lines = running.log.read_text(errors="replace").splitlines()
        for line in lines:
            if line.startswith(ready):
                return line.removeprefix(ready).strip()
        if running.process.poll() is not None:
            last = lines[-1] if lines else "no output"
            raise RuntimeError(f"{running.name} exited with status "
                               f"{running.process.returncode}: {last}")
        time.sleep(0.05)
    raise RuntimeError(f"{running.name} was not ready after {START_TIMEOUT:.0f}s "
                       f"(see {running.log})")


def write_secret(path: Path, value: str) -> Path:
    """Write ``value`` to a file only the user can read (talprov.yaml refers to it)."""
    path.touch(mode=0o600)
    path.write_text(value)
    return path


def file_ref(path: Path) -> str:
    """A talprov.yaml secret reference to the file at ``path``."""
    return "${file:" + str(path) + "}"


def certificate_fingerprint(host: str, port: int) -> str:
    """SHA-256 of the server's certificate as AA:BB:... (how PVE prints it)."""
    pem = ssl.get_server_certificate((host, port))
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


@dataclass
class Row:
    """One machine of the demo as its platform reports it."""

    platform: str
    record: RequestRecord
    machine: str | None = None
    where: str | None = None
    address: str | None = None
    state: str = "missing"
    config: str = "-"
    check: str = "-"
    ok: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The row for the table (``ok`` stays out of the columns)."""
        return {
            "platform": self.platform, "request": self.record.request.id,
            "set": self.record.request.labels.get("talprov.set"),
            "stage": self.record.stage.value, "machine": self.machine or self.record.infra_id,
            "where": self.where, "address": self.address, "state": self.state,
            "config": self.config, "check": self.check, "ok": self.ok,
        }


