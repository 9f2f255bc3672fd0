"""fakepve in its own process with a control endpoint beside it (``fakepve_launcher.py``).

The tests' ``fakepve`` fixture and the pytest plugin start it through
:func:`start_fakepve`. fakepve's code never runs in the calling process: fault
injection, ``reset`` and views of its state go through the control endpoint.
Everything listens on 127.0.0.1 with ports the system picks.
"""

from __future__ import annotations

import json
import secrets
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talprov.demo_platforms.common import EmulatorProcess, start_emulator, wait_for_line

LAUNCHER = Path(__file__).with_name("fakepve_launcher.py")
USER = "root@pam"


@dataclass
class FakePveServer:
    """A running fakepve: where it listens, how to trust it, and its control API."""

    host: str
    port: int
    control_url: str
    ca_file: Path
    user: str = USER
    password: str = ""
    emulator: EmulatorProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def control(self, op: str, **args: Any) -> Any:
        """Run one fakepve scenario method in the server process (see the launcher)."""
        body = json.dumps({"op": op, "args": args}).encode()
        request = urllib.request.Request(  # noqa: S310 - our own server's http URL
            self.control_url + "/control", data=body,
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())["result"]

    def vms(self) -> list[dict[str, Any]]:
        return list(self.control("vms"))

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()


def start_fakepve(workdir: Path, guests: list[dict[str, Any]] | None = None) -> FakePveServer:
    """Start a fakepve process; raises RuntimeError if it does not come up in time.

    Its password is made up here and reaches the process in its environment, not on
    its command line where every local user could read it.
    """
    password = secrets.token_urlsafe(18)
    guests_file = workdir / "guests.json"
    guests_file.write_text(json.dumps({"guests": guests or []}))
    cert_dir = workdir / "pki"
    cert_dir.mkdir(exist_ok=True)
    emulator, api_url = start_emulator(
        "fakepve", [sys.executable, "-I", str(LAUNCHER), str(guests_file), "--cert-dir",
                    str(cert_dir), "--user", USER],
        workdir / "fakepve.log", "fakepve listening on ", env={"FAKEPVE_PASSWORD": password})
    try:
        control_url = wait_for_line(emulator, "control listening on ")
    except BaseException:
        emulator.stop()
        raise
    return FakePveServer(
        host="127.0.0.1", port=int(api_url.rsplit(":", 1)[1]), control_url=control_url,
        ca_file=cert_dir / "fakepve.crt", password=password, emulator=emulator,
    )


