
"""pytest fixture ``fakepve``: a fakepve server in its own process, one per test.

The server is started through ``fakepve_launcher.py`` (same folder), which adds a
control endpoint for fakepve's fault injection; fakepve's code never runs in the
test process. Everything listens on 127.0.0.1 with ports the system picks.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from talprov.processes import stop_process

LAUNCHER = Path(__file__).with_name("fakepve_launcher.py")
START_TIMEOUT = 20.0
USER = "root@pam"
PASSWORD = "secret"


@dataclass
class FakePveServer:
    """A running fakepve: where it listens, how to trust it, and its control API."""

    host: str
    port: int
    control_url: str
    ca_file: Path
    user: str = USER
    password: str = PASSWORD
    process: subprocess.Popen[str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def control(self, op: str, **args: Any) -> Any:
        """Run one fakepve scenario method in the server process (see the launcher)."""
        body = json.dumps({"op": op, "args": args}).encode()
        request = urllib.request.Request(
            self.control_url + "/control", data=body,
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["result"]

    def vms(self) -> list[dict[str, Any]]:
        return list(self.control("vms"))

    def stop(self) -> None:
        stop_process(self.process)


def _read_lines(stream: IO[str], out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)


def start_fakepve(workdir: Path, guests: list[dict[str, Any]] | None = None) -> FakePveServer:
    """Start a fakepve process; raises RuntimeError if it does not come up in time."""
    guests_file = workdir / "guests.json"
    guests_file.write_text(json.dumps({"guests": guests or []}))
    cert_dir = workdir / "pki"
    cert_dir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    process = subprocess.Popen(
        [sys.executable, "-I", str(LAUNCHER), str(guests_file), "--cert-dir", str(cert_dir),
         "--user", USER, "--password", PASSWORD],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    api_port = control_url = None
    seen: list[str] = []
    try:
        while api_port is None or control_url is None:
            line = lines.get(timeout=START_TIMEOUT).strip()
            seen.append(line)
            if line.startswith("fakepve listening on https://"):
                api_port = int(line.rsplit(":", 1)[1])
            elif line.startswith("control listening on "):
                control_url = line.split(" on ", 1)[1]
    except queue.Empty:
        process.kill()
        raise RuntimeError("fakepve did not start: " + " | ".join(seen)) from None
    return FakePveServer(
        host="127.0.0.1", port=api_port, control_url=control_url,
        ca_file=cert_dir / "fakepve.crt", process=process,
    )


@pytest.fixture
def fakepve(tmp_path: Path) -> Iterator[FakePveServer]:
    """A fresh fakepve server for one test (node pve1, storages local and local-lvm)."""
    server = start_fakepve(tmp_path)
    try:
        yield server
    finally:
        server.stop()
