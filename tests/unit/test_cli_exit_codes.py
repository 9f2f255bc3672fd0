"""The console entry point's exit codes, Ctrl-C included."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest

from talprov.cli import cli, main


@pytest.fixture
def interrupted_command() -> Iterator[None]:
    @click.command("test-interrupted")
    def interrupted() -> None:
        raise KeyboardInterrupt

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
