"""SIGTERM (systemd, Kubernetes, a CI timeout) stops every talprov command as
Ctrl-C does: one line, exit 143 (128 + SIGTERM), the leases given back. And an
interruption while the CLI is still importing ends without a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import types

import pytest

from talprov import launcher
from talprov.store.store import Store
from tests.helpers import Home
from tests.unit.reconcile.test_crash_resume import wait_for


@pytest.mark.parametrize("command", [
    ["reconcile", "--interval", "0.1"],
    ["machine", "create", "--wait", "-f"],
])
def test_sigterm_mid_step_exits_143_and_gives_the_lease_back(
        home: Home, command: list[str]) -> None:
    marker = home.root / "created.marker"
    home.providers["fake"]["pause_after_create"] = str(marker)
    home.write_config()
    request = home.write_request("term-1")
    if command[0] == "reconcile":
        home.run("machine", "create", "-f", str(request), check=True)
    else:
        command = [*command, str(request)]

    worker = subprocess.Popen(
        [sys.executable, "-m", "talprov", *command],
        env=home.env(), cwd=home.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(marker, worker)  # the create happened; the step is under way
        store = Store(home.store_url)
        holder = store.lease_holder("term-1")
        assert holder is not None
        assert holder[0].endswith(f":{worker.pid}")
        os.kill(worker.pid, signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 143, err
    assert "talprov: interrupted (SIGTERM)" in err or "interrupted: " in err, err
    assert "Traceback" not in err, err
    assert store.lease_holder("term-1") is None


class _ImportInterrupted(types.ModuleType):
    """A talprov.cli whose import is cut short by Ctrl-C (the first seconds of a
    command: SQLAlchemy and pydantic are still loading)."""

    def __getattr__(self, name: str) -> object:
        raise KeyboardInterrupt


def test_ctrl_c_while_the_cli_still_imports_ends_without_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "talprov.cli", _ImportInterrupted("talprov.cli"))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exited:
            launcher.main()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exited.value.code == 130
    assert capsys.readouterr().err == "talprov: interrupted\n"

