"""``talprov serve`` as a child process for the ``talprov_service`` fixture."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from talprov.processes import stop_process

READY_TIMEOUT = 60.0


@dataclass
class RunningService:
    """A ``talprov serve`` on 127.0.0.1: its base URL and a write token for every
    provider instance (send it as ``Authorization: Bearer <token>``)."""

    url: str
    token: str
    process: subprocess.Popen[str] = field(repr=False)
    lines: list[str] = field(default_factory=list, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header for ``token``."""
        return {"Authorization": f"Bearer {self.token}"}

    def output(self) -> str:
        """Everything the service wrote so far (its log lines; secrets are redacted)."""
        return "".join(self.lines)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers. Idempotent."""
        stop_process(self.process)


def start_service(config: Path, token: str, log: Path) -> RunningService:
    """Start ``talprov --config CONFIG serve --listen 127.0.0.1:0``; return once it
    listens. Raises ``RuntimeError`` with its output when it exits or is not ready
    within READY_TIMEOUT seconds (it is stopped then)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "talprov", "--config", str(config), "serve",
         "--listen", "127.0.0.1:0", "--no-boot-server"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    service = RunningService("", token, process)
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        with log.open("a") as keep:
            for line in process.stdout:
                service.lines.append(line)
                keep.write(line)
                if "listening on " in line and not service.url:
                    # A JSON log line ends with `"}`; a plain one with the URL.
                    tail = line.split("listening on ", 1)[1]
                    service.url = tail.split('"', 1)[0].strip()
                    ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True, name="talprov-serve-output").start()
    if not ready.wait(READY_TIMEOUT) or not service.url:
        service.stop()
        raise RuntimeError("talprov serve did not start:\n" + service.output())
    return service
