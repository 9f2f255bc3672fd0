"""``talprov baremetal serve`` stops as ``talprov serve`` does: QA found it exited
0 with no line at all on SIGTERM and SIGINT, so an operator (or a service
manager's log) could not tell a stop from a crash that exited 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import Home
from tests.unit.baremetal.test_cli_operator import free_port


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_stop_signal_says_stopped(home: Home, tmp_path: Path, signum: signal.Signals,
                                    code: int) -> None:
    port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "inventory": str(tmp_path / "inv.sqlite"), "boot_url": f"http://127.0.0.1:{port}",
        "listen_address": "127.0.0.1", "listen_port": port, "tftp_enabled": False,
        "mirror_dir": str(tmp_path / "mirror")}))
    proc = subprocess.Popen([sys.executable, "-m", "talprov", "baremetal", "--file",
                             str(config), "serve"], env=home.env(),
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "boot server did not start"
                time.sleep(0.1)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, stderr
    assert stderr.rstrip().splitlines()[-1] == "stopped", stderr
    assert "Traceback" not in stderr, stderr
