"""A --wait's progress line: on a terminal rewritten in place with the time waited
ticking; in a log a new line only when the state changes or every HEARTBEAT."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import struct
import termios
import time
from collections.abc import Iterator

import pytest

from talprov.cli import waiting
from talprov.cli.app import say
from talprov.cli.statusline import STATUS_LINE, LineEndingHandler
from talprov.cli.waiting import HEARTBEAT, WaitProgress
from talprov.testing import FakeClock


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> _Terminal:
    """stderr as a terminal, from here on in the test (pytest sets its own capture
    after the fixtures are set up)."""
    stream = _Terminal()
    monkeypatch.setattr("sys.stderr", stream)
    return stream


@pytest.fixture(autouse=True)
def no_open_line() -> Iterator[None]:
    yield
    STATUS_LINE.close()


def test_on_a_terminal_an_unchanged_line_shows_the_time_waited_now(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tty = on_a_terminal(monkeypatch)
    # QA: the [XmYYs] of an unchanged line stayed at 0m00s for 30 s.
    clock = FakeClock()
    progress = WaitProgress(clock)
    progress.show("c1: w 0/1")
    clock.sleep(1.0)
    progress.show("c1: w 0/1")
    clock.sleep(1.0)
    progress.tick()  # the ticker's redraw, between two checks of the state
    clock.sleep(1.0)
    progress.show("c1: w 1/1")  # a new state: the last one stays above it
    assert tty.getvalue() == ("\rc1: w 0/1 [0m00s]\x1b[K"
                            "\rc1: w 0/1 [0m01s]\x1b[K"
                            "\rc1: w 0/1 [0m02s]\x1b[K"
                            "\n\rc1: w 1/1 [0m03s]\x1b[K")


def test_in_a_log_an_unchanged_line_is_said_again_only_every_heartbeat(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", log)
    clock = FakeClock()
    progress = WaitProgress(clock)
    for _ in range(int(HEARTBEAT)):
        progress.show("c1: w 0/1")
        progress.tick()
        clock.sleep(1.0)
    progress.show("c1: w 0/1")
    assert log.getvalue() == "c1: w 0/1 [0m00s]\nc1: w 0/1 [0m30s]\n"


def test_lines_said_or_logged_meanwhile_go_below_the_open_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tty = on_a_terminal(monkeypatch)
    clock = FakeClock()
    progress = WaitProgress(clock)
    progress.show("r1: pending")
    say("warning: r1: the factory is slow")
    handler = LineEndingHandler(tty)
    progress.tick()
    handler.emit(logging.makeLogRecord({"msg": "a worker's record"}))
    assert tty.getvalue() == ("\rr1: pending [0m00s]\x1b[K\n"
                            "warning: r1: the factory is slow\n"
                            "\rr1: pending [0m00s]\x1b[K\n"
                            "a worker's record\n")


def test_the_ticker_redraws_until_the_wait_ends_then_ends_the_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tty = on_a_terminal(monkeypatch)
    clock = FakeClock()
    progress = WaitProgress(clock)
    with progress.ticking(every=0.01):
        progress.show("r1: pending")
        deadline = time.monotonic() + 10
        while tty.getvalue().count("\r") < 3 and time.monotonic() < deadline:
            clock.sleep(1.0)
            time.sleep(0.01)
    drawn = tty.getvalue()
    assert drawn.count("\r") >= 3, drawn
    assert drawn.endswith("\x1b[K\n"), drawn
    assert STATUS_LINE.close() is False


def test_a_wait_broken_off_leaves_the_line_to_the_interruption(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tty = on_a_terminal(monkeypatch)
    progress = WaitProgress(FakeClock())

    def interrupted_wait() -> None:
        with waiting.interruptible("request r1"), progress.ticking(every=60):
            progress.show("r1: pending")
            raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exited:
        interrupted_wait()
    assert exited.value.code == 130
    assert tty.getvalue() == (
        "\rr1: pending [0m00s]\x1b[K\n"
        "talprov: interrupted: request r1 is recorded; `talprov reconcile` (or a running "
        "`talprov serve`) carries it on\n")


def test_a_line_wider_than_the_terminal_is_cut_and_keeps_its_time() -> None:
    # A line that wraps cannot be rewritten in place: each redraw would add a row.
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 30, 0, 0))
    with os.fdopen(follower, "w") as terminal:
        STATUS_LINE.rewrite("c1: control-planes 0/3 (+3)  workers 0/5", terminal,
                            tail=" [0m07s]")
        drawn = os.read(leader, 1000).decode()
    os.close(leader)
    assert drawn == "\rc1: control-planes 0… [0m07s]\x1b[K"  # 29 of 30 columns
