"""The console entry point's exit codes, Ctrl-C included."""

from __future__ import annotations

import io
import signal
import sys
from collections.abc import Iterator

import click
import pytest

from talprov.cli import cli, main
from talprov.cli.statusline import STATUS_LINE
from talprov.stopping import Terminated


@pytest.fixture(autouse=True)
def signal_handlers_kept() -> Iterator[None]:
    """main() installs its SIGINT and SIGTERM handlers; pytest gets its own back."""
    kept = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)


@pytest.fixture
def interrupted_command() -> Iterator[None]:
    @click.command("test-interrupted")
    @click.option("--by-sigterm", is_flag=True)
    @click.option("--mid-line", is_flag=True, help="Interrupted while a wait's line is open.")
    def interrupted(by_sigterm: bool, mid_line: bool) -> None:
        if mid_line:
            STATUS_LINE.rewrite("c1: w 0/1 [0m03s]", sys.stderr)
        raise Terminated if by_sigterm else KeyboardInterrupt

    cli.add_command(interrupted)
    yield
    cli.commands.pop("test-interrupted")


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr("sys.argv", ["talprov", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    code = exited.value.code
    return code if isinstance(code, int) else 1


def test_ctrl_c_exits_130_without_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        interrupted_command: None) -> None:
    assert run_main(monkeypatch, "test-interrupted") == 130
    err = capsys.readouterr().err
    assert "interrupted" in err
    assert "Traceback" not in err


def test_help_version_and_usage_errors_keep_their_codes(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(monkeypatch, "--version") == 0
    assert "talprov" in capsys.readouterr().out
    assert run_main(monkeypatch, "--help") == 0
    assert run_main(monkeypatch, "--no-such-option") == 2
    assert "No such option" in capsys.readouterr().err
    assert run_main(monkeypatch, "image", "id") == 2


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_an_interruption_in_a_log_or_a_pipe_is_one_line_without_a_blank_one(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        interrupted_command: None) -> None:
    # QA: click printed a blank line for the terminal's ^C into logs too.
    assert run_main(monkeypatch, "test-interrupted") == 130
    assert capsys.readouterr().err == "talprov: interrupted\n"
    assert run_main(monkeypatch, "test-interrupted", "--by-sigterm") == 143
    assert capsys.readouterr().err == "talprov: interrupted (SIGTERM)\n"


@pytest.mark.parametrize(("args", "code", "err"), [
    # The terminal echoed ^C: the line goes below it.
    ((), 130, "\ntalprov: interrupted\n"),
    # Nothing left on the line: nothing to end.
    (("--by-sigterm",), 143, "talprov: interrupted (SIGTERM)\n"),
    # A progress line being rewritten is ended, once.
    (("--by-sigterm", "--mid-line"), 143,
     "\rc1: w 0/1 [0m03s]\x1b[K\ntalprov: interrupted (SIGTERM)\n"),
])
def test_on_a_terminal_the_line_starts_below_what_the_last_line_holds(
        monkeypatch: pytest.MonkeyPatch, interrupted_command: None,
        args: tuple[str, ...], code: int, err: str) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert run_main(monkeypatch, "test-interrupted", *args) == code
    assert terminal.getvalue() == err
    assert STATUS_LINE.close() is False
