"""SIGTERM (systemd, Kubernetes, a CI timeout) stops every talprov command as
Ctrl-C does: one line, exit 143 (128 + SIGTERM), the leases given back. And an
interruption while the CLI is still importing ends without a traceback."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from talprov import launcher
from talprov.processes import stop_process
from talprov.stopping import Terminated
from talprov.store.store import Store
from tests.helpers import Home
from tests.unit.reconcile.test_crash_resume import wait_for
from tests.unit.test_cluster_apply import write_spec


def leases_of(store: Store, pid: int) -> list[str]:
    """The request and cluster leases a process of this host holds now."""
    owners = [h.owner for h in store.lease_holders()]
    owners += [owner for _, owner, _ in store.cluster_lease_holders()]
    return [o for o in owners if o.split("/", 1)[0].endswith(f":{pid}")]


def start_mid_step(home: Home, command: str) -> subprocess.Popen[str]:
    """``talprov COMMAND`` as a real process, returned once a step of it has created
    a machine and blocks there (under a lease)."""
    marker = home.root / "created.marker"
    home.providers["fake"]["pause_after_create"] = str(marker)
    home.write_config()
    request = home.write_request("term-1")
    args = {
        "reconcile": ["reconcile", "--interval", "0.1"],
        "machine create --wait": ["machine", "create", "--wait", "-f", str(request)],
        "apply --wait": ["apply", "--wait", "-f",
                         str(write_spec(home.root, control_planes=1, workers=0))],
    }[command]
    if command == "reconcile":
        home.run("machine", "create", "-f", str(request), check=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "talprov", *args],
        env=home.env(), cwd=home.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(marker, worker)  # a machine was created; its step is under way
    except BaseException:
        stop_process(worker)
        raise
    return worker


def signalled(worker: subprocess.Popen[str], *signals_and_gaps: float) -> str:
    """Send each signal of ``signals_and_gaps`` (signal, seconds to wait, signal,
    ...) to ``worker``; its stderr (or stdout, when stderr is not piped) once it
    exited."""
    try:
        for item in signals_and_gaps:
            if isinstance(item, signal.Signals):
                os.kill(worker.pid, item)
            else:
                time.sleep(item)
        out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    return out if err is None else err


@pytest.mark.parametrize("command", ["reconcile", "machine create --wait", "apply --wait"])
def test_sigterm_mid_step_exits_143_and_gives_the_leases_back(
        home: Home, command: str) -> None:
    worker = start_mid_step(home, command)
    store = Store(home.store_url)
    assert leases_of(store, worker.pid)  # the step runs under a lease
    err = signalled(worker, signal.SIGTERM)
    assert worker.returncode == 143, err
    # One line: the CLI's, or the --wait line that also says what stays recorded.
    assert err.splitlines()[-1].startswith("talprov: interrupted (SIGTERM)"), err
    assert "Traceback" not in err, err
    assert "" not in err.splitlines(), f"a blank line in a log: {err!r}"
    assert leases_of(store, worker.pid) == []
    store.close()


@pytest.mark.parametrize(("command", "first", "second", "gap"), [
    ("reconcile", signal.SIGINT, signal.SIGTERM, 0.005),
    ("reconcile", signal.SIGINT, signal.SIGTERM, 0.02),
    ("reconcile", signal.SIGTERM, signal.SIGINT, 0.005),
    ("apply --wait", signal.SIGINT, signal.SIGTERM, 0.005),
    ("apply --wait", signal.SIGTERM, signal.SIGINT, 0.02),
])
def test_a_second_signal_during_the_clean_up_is_ignored(
        home: Home, command: str, first: signal.Signals, second: signal.Signals,
        gap: float) -> None:
    # QA: Ctrl-C and a SIGTERM ms later printed a traceback raised inside the
    # first one's clean-up (closing the store's connections), or the process died
    # of the second signal at exit.
    worker = start_mid_step(home, command)
    store = Store(home.store_url)
    err = signalled(worker, first, gap, second)
    assert worker.returncode == 128 + first, err  # the first signal's code
    assert "Traceback" not in err, err
    assert "Exception" not in err, err
    assert len([line for line in err.splitlines() if "interrupted" in line]) == 1, err
    assert leases_of(store, worker.pid) == []
    store.close()


def test_apply_interrupted_in_its_first_pass_says_the_cluster_is_recorded(
        home: Home) -> None:
    # QA: apply --wait against a cloud that never answers, Ctrl-C: only
    # "talprov: interrupted", though the spec was recorded and a reconciler carries
    # it on (machine create --wait says so).
    marker = home.root / "listing.marker"
    home.providers["fake"]["pause_in_listing"] = str(marker)
    home.write_config()
    worker = subprocess.Popen(
        [sys.executable, "-m", "talprov", "apply", "--wait", "-f",
         str(write_spec(home.root, control_planes=1, workers=0))],
        env=home.env(), cwd=home.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(marker, worker)  # the first pass lists the machines, and hangs
    except BaseException:
        stop_process(worker)
        raise
    err = signalled(worker, signal.SIGINT)
    assert worker.returncode == 130, err
    assert err.splitlines()[-1].startswith("talprov: interrupted: cluster "), err
    assert "is recorded" in err.splitlines()[-1], err


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



@pytest.mark.parametrize("command", [["machine", "list"], ["status", "demo", "-o", "json"]])
def test_sigterm_ends_a_watch_as_it_ends_every_command(
        home: Home, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    home.invoke("apply", "-f", str(write_spec(home.root, control_planes=1, workers=0)))

    def terminated(_seconds: float) -> None:
        raise Terminated

    monkeypatch.setattr(time, "sleep", terminated)
    result = home.invoke(*command, "--watch", "1")
    assert result.exit_code == 143, result.output
    assert result.stderr == "talprov: interrupted (SIGTERM)\n"


def test_two_signals_at_once_stop_the_command_once(home: Home) -> None:
    # Both pending before either's handler ran: which one a thread of the process
    # took first is the kernel's choice, so either exit code may be the answer;
    # the other must not be said on stderr ("Signal 15 ignored due to race
    # condition", which CPython prints for a pending signal whose handler became
    # SIG_IGN meanwhile).
    worker = start_mid_step(home, "reconcile")
    err = signalled(worker, signal.SIGINT, signal.SIGTERM)
    assert worker.returncode in (130, 143), err
    by = " (SIGTERM)" if worker.returncode == 143 else ""
    assert err.splitlines() == [f"talprov: interrupted{by}"], err


def full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full: a process writing to it blocks until it is read."""
    read_end, write_end = os.pipe()
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"x" * 4096)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags)
    return read_end, write_end


def blocked_writing_stdout(pid: int) -> bool:
    """Whether process ``pid`` is in a write(2) to its fd 1 now."""
    try:
        return Path(f"/proc/{pid}/syscall").read_text().startswith("1 0x1 ")
    except OSError:
        return False


@pytest.mark.parametrize("then_ctrl_c", [False, True])
def test_sigterm_while_apply_wait_prints_its_result_ends_in_one_line(
        home: Home, then_ctrl_c: bool) -> None:
    # The wait is over; the command is printing what it converged to (stdout is a
    # pipe nobody reads yet) when SIGTERM comes, and Ctrl-C just after it.
    read_end, write_end = full_pipe()
    spec = write_spec(home.root, control_planes=1, workers=0)
    worker = subprocess.Popen(
        [sys.executable, "-m", "talprov", "apply", "--wait", "-f", str(spec)],
        env=home.env(), cwd=home.root, stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    try:
        deadline = time.monotonic() + 60
        while not blocked_writing_stdout(worker.pid):
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "apply --wait never printed its result"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGTERM)
        if then_ctrl_c:
            time.sleep(0.005)
            os.kill(worker.pid, signal.SIGINT)
        drained = threading.Thread(target=os.read, args=(read_end, 1 << 20), daemon=True)
        drained.start()
        _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
        os.close(read_end)
    assert worker.returncode == 143, err
    assert err.splitlines()[-1] == "talprov: interrupted (SIGTERM)", err
    assert "Traceback" not in err, err
    assert "Exception" not in err, err


@pytest.mark.parametrize("command", ["machine create --wait", "apply --wait"])
def test_a_wait_stops_at_its_deadline_while_a_pass_is_in_flight(
        home: Home, command: str) -> None:
    # QA: a pass in flight (here a step that never returns) carried the wait past
    # --timeout until the pass ended, if ever.
    marker = home.root / "created.marker"
    home.providers["fake"]["pause_after_create"] = str(marker)
    home.write_config()
    args = {
        "machine create --wait": ["machine", "create", "-f",
                                  str(home.write_request("late-1"))],
        "apply --wait": ["apply", "-f", str(write_spec(home.root, control_planes=1,
                                                       workers=0))],
    }[command]
    started = time.monotonic()
    worker = subprocess.Popen(
        [sys.executable, "-m", "talprov", *args, "--wait", "--timeout", "4"],
        env=home.env(), cwd=home.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        _, err = worker.communicate(timeout=60)
    finally:
        stop_process(worker)
    took = time.monotonic() - started
    assert marker.exists()  # the step was in flight at the deadline
    assert worker.returncode == 1, err
    assert "after 4s" in err, err
    assert "Traceback" not in err, err
    assert took < 20, took  # the deadline, the start-up and the unwinding, not 60 s
    store = Store(home.store_url)
    assert leases_of(store, worker.pid) == []
    store.close()
