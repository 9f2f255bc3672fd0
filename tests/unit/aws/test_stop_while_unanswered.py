"""SIGTERM stops `talprov reconcile --once`, and a `--wait` ends at its
`--timeout`, at once while their AWS calls get no answer (an endpoint that
accepts and never replies): the process used to exit only when the HTTP
client's read timeout ran out (~602 s for 600), waiting for the listing's
thread when leaving the pass and again at the interpreter's exit."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from talprov.processes import stop_process
from tests.helpers import Home


class Blackhole:
    """A TCP server on 127.0.0.1 that accepts every connection, reads what comes
    and never answers. ``received`` counts the connections that sent something."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._open: list[socket.socket] = []
        self.received = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="blackhole").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._open.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    def _swallow(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if conn.recv(65536):
                with self._lock:
                    self.received += 1
            while conn.recv(65536):
                pass

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for conn in self._open:
                conn.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


@pytest.fixture
def aws_home(home: Home, blackhole: Blackhole, monkeypatch: pytest.MonkeyPatch) -> Home:
    """``home`` with an AWS instance ``ec2`` whose endpoint is ``blackhole``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    home.providers["ec2"] = {"type": "aws", "region": "eu-west-1",
                             "endpoint_url": blackhole.url, "read_timeout": 600,
                             "max_attempts": 1}
    home.write_config()
    return home


def started(home: Home, blackhole: Blackhole, *args: str) -> subprocess.Popen[str]:
    """``talprov ARGS`` as a real process, returned once its calls reached the
    endpoint (and get no answer)."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "talprov", *args],
        env=home.env(), cwd=home.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + 60
    while blackhole.received == 0:
        if worker.poll() is not None or time.monotonic() > deadline:
            stop_process(worker)
            pytest.fail(f"no call reached the endpoint: {worker.communicate()}")
        time.sleep(0.05)
    time.sleep(0.5)
    return worker


def ended(worker: subprocess.Popen[str], within: float) -> str:
    """``worker``'s stderr once it exited; fails the test when it is still running
    after ``within`` seconds."""
    try:
        return worker.communicate(timeout=within)[1]
    except subprocess.TimeoutExpired:
        stop_process(worker)
        worker.communicate()
        pytest.fail(f"still running {within:.0f} s later: it waits for the unanswered call")


def test_sigterm_while_aws_never_answers_exits_143_at_once(
        aws_home: Home, blackhole: Blackhole) -> None:
    request = aws_home.write_request("hole-1", provider="ec2",
                                     provider_data={"instance_type": "t3.small"})
    aws_home.run("machine", "create", "-f", str(request), check=True)
    worker = started(aws_home, blackhole, "reconcile", "--once")
    worker.send_signal(signal.SIGTERM)
    err = ended(worker, 10)
    assert worker.returncode == 143, err
    assert err.splitlines()[-1] == "talprov: interrupted (SIGTERM)", err
    assert "Traceback" not in err, err


def test_a_wait_whose_deadline_passes_while_aws_never_answers_ends_then(
        aws_home: Home, blackhole: Blackhole) -> None:
    request = aws_home.write_request("hole-2", provider="ec2",
                                     provider_data={"instance_type": "t3.small"})
    worker = started(aws_home, blackhole, "machine", "create", "--wait", "--timeout", "3",
                     "-f", str(request))
    err = ended(worker, 12)
    assert worker.returncode == 1, err
    assert "hole-2: still pending after 3s" in err, err
    assert "Traceback" not in err, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_at_once_while_aws_never_answers(
        aws_home: Home, blackhole: Blackhole, signum: signal.Signals) -> None:
    """QA: serve's reconcile worker process finished its pass before it stopped, so
    a SIGTERM or Ctrl-C waited the whole stop_timeout (30 s) for a call that never
    returns. The worker now interrupts its pass as ``reconcile --once`` does."""
    from tests.unit.service.conftest import TOKENS
    from tests.unit.service.serving import ServeProcess

    request = aws_home.write_request("hole-3", provider="ec2",
                                     provider_data={"instance_type": "t3.small"})
    aws_home.run("machine", "create", "-f", str(request), check=True)
    aws_home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.2})
    server = ServeProcess(aws_home.env(), aws_home.root)
    deadline = time.monotonic() + 60
    while blackhole.received == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert blackhole.received, server.output()
    time.sleep(0.5)
    started_at = time.monotonic()
    server.process.send_signal(signum)
    code = server._finish(25)
    took = time.monotonic() - started_at
    assert code == (0 if signum == signal.SIGTERM else 130), server.output()
    assert took < 10, (took, server.output())
    assert server.output().rstrip().endswith("stopped"), server.output()
    assert "did not finish" not in server.output(), server.output()
    assert "Traceback" not in server.output(), server.output()
