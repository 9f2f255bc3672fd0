
"""pytest fixture ``fakepve``: a fakepve server in its own process, one per test.

The server is started through ``fakepve_launcher.py`` (same folder), which adds a
control endpoint for fakepve's fault injection; fakepve's code never runs in the
test process. Everything listens on 127.0.0.1 with ports the system picks.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from talprov.demo_platforms.common import EmulatorProcess, start_emulator, wait_for_line

LAUNCHER = Path(__file__).with_name("fakepve_launcher.py")
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
    emulator: EmulatorProcess | None = field(default=None, repr=False)

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
        if self.emulator is not None:
            self.emulator.stop()


def start_fakepve(workdir: Path, guests: list[dict[str, Any]] | None = None) -> FakePveServer:
    """Start a fakepve process; raises RuntimeError if it does not come up in time."""
    guests_file = workdir / "guests.json"
    guests_file.write_text(json.dumps({"guests": guests or []}))
    cert_dir = workdir / "pki"
    cert_dir.mkdir(exist_ok=True)
    emulator, api_url = start_emulator(
        "fakepve", [sys.executable, "-I", str(LAUNCHER), str(guests_file), "--cert-dir",
                    str(cert_dir), "--user", USER, "--password", PASSWORD],
        workdir / "fakepve.log", "fakepve listening on ")
    try:
        control_url = wait_for_line(emulator, "control listening on ")
    except BaseException:
        emulator.stop()
        raise
    return FakePveServer(
        host="127.0.0.1", port=int(api_url.rsplit(":", 1)[1]), control_url=control_url,
        ca_file=cert_dir / "fakepve.crt", emulator=emulator,
    )


@pytest.fixture
def fakepve(tmp_path: Path) -> Iterator[FakePveServer]:
    """A fresh fakepve server for one test (node pve1, storages local and local-lvm)."""
    server = start_fakepve(tmp_path)
    try:
        yield server
    finally:
        server.stop()
