"""`talprov serve`: a SIGTERM or Ctrl-C that comes after serve put its handler in
place but before uvicorn put in its own (uvicorn starts its event loop and loads
the app first) stops the server as one that comes later does. It was noted and
then forgotten: uvicorn served on until a second signal."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from talprov.cli.serve import _run_until_stopped


class EarlySignalServer:
    """uvicorn's Server as far as serve uses it: ``run`` gets ``signum`` first
    (before its own handlers are in place), then serves until ``should_exit``
    is set, as uvicorn's main loop does; at most ``serves_for`` seconds."""

    def __init__(self, signum: int, serves_for: float = 3.0) -> None:
        self.signum = signum
        self.serves_for = serves_for
        self.should_exit = False
        self.served = 0.0

    def _handle_exit(self, _signum: int, _frame: object) -> None:
        self.should_exit = True

    def run(self, sockets: list[socket.socket]) -> None:
        os.kill(os.getpid(), self.signum)  # while the event loop is being set up
        kept = {sig: signal.signal(sig, self._handle_exit)
                for sig in (signal.SIGINT, signal.SIGTERM)}
        started = time.monotonic()
        try:
            if not self.should_exit:  # uvicorn: startup, then this check
                while not self.should_exit and time.monotonic() - started < self.serves_for:
                    time.sleep(0.01)
        finally:
            self.served = time.monotonic() - started
            for sig, handler in kept.items():
                signal.signal(sig, handler)


@pytest.fixture
def handlers_kept() -> Iterator[None]:
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, None), (signal.SIGINT, 130)])
def test_a_signal_before_uvicorns_handlers_stops_the_server(
        handlers_kept: None, signum: int, code: int | None) -> None:
    server = EarlySignalServer(signum)
    with socket.socket() as sock:
        if code is None:
            _run_until_stopped(server, sock, None, [], None)
        else:
            with pytest.raises(SystemExit) as exited:
                _run_until_stopped(server, sock, None, [], None)
            assert exited.value.code == code
    assert server.served < 1.0, f"served {server.served:.1f} s after the signal"
