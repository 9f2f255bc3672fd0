"""sushy-tools' Redfish emulator with its fake driver, on 127.0.0.1 (HTTP, basic auth).

The fake driver applies power changes 1–11 s after the request (like real
hardware) and keeps only the boot target, not the "once" flag.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from talprov.processes import stop_process

USER = "admin"
PASSWORD = "redfish-rig-pass"
SYSTEM_UUID = "27946b59-9e44-4fa7-8e91-f3527a1ef094"


@contextmanager
def sushy_emulator(root: Path) -> Iterator[str]:
    """Run the emulator; yields its base URL. Stops it afterwards."""
    import bcrypt

    binary = Path(sys.executable).parent / "sushy-emulator"
    if not binary.exists():
        found = shutil.which("sushy-emulator")
        if found is None:
            raise RuntimeError("sushy-emulator missing: pip install sushy-tools")
        binary = Path(found)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (root / "htpasswd").write_text(f"{USER}:{hashed}\n")
    systems = [{"uuid": SYSTEM_UUID, "name": "fake1", "power_state": "Off",
                "nics": [{"mac": "52:54:00:00:00:01", "ip": "10.0.0.1"}]}]
    (root / "sushy.conf").write_text(
        f"SUSHY_EMULATOR_AUTH_FILE = {str(root / 'htpasswd')!r}\n"
        "SUSHY_EMULATOR_FAKE_DRIVER = True\n"
        f"SUSHY_EMULATOR_STATE_DIR = {str(root / 'state')!r}\n"
        f"SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (root / "sushy.log").open("wb")
    proc = subprocess.Popen([str(binary), "--config", str(root / "sushy.conf"), "-i",
                             "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{url}/redfish/v1/", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                output = (root / "sushy.log").read_text()
                raise RuntimeError(f"sushy-emulator did not start: {output}")
            time.sleep(0.05)
        yield url
    finally:
        stop_process(proc)
