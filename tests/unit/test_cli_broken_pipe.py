"""A closed stdout (`talprov ... | head -1`) ends talprov quietly with 141
(128 + SIGPIPE, what a shell shows for `yes | head -1`) (QA C8: exit 1, nothing
said, and the demo abandoned its machines half-way).

The pipe's reading end is closed before talprov starts, so its first write to
stdout fails: no timing involved.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from talprov.cli.output import EXIT_BROKEN_PIPE
from tests.helpers import Home
from tests.unit import test_demo as runs


def run_into_closed_pipe(args: list[str], env: dict[str, str],
                         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m talprov ARGS`` with stdout a pipe nobody reads any more."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "talprov", *args], env=env, cwd=cwd,
                              stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=300, check=False)
    finally:
        os.close(write_end)


def _env(home: Home) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALPROV_")}
    env.update(TALPROV_CONFIG=str(home.config_path), XDG_STATE_HOME=str(home.root / "state"),
               XDG_CACHE_HOME=str(home.root / "cache"),
               PYTHONPATH=os.pathsep.join([str(home.plugin_dir), *sys.path]))
    return env


@pytest.mark.parametrize("args", [["providers"], ["machine", "list", "-o", "json"],
                                  ["--help"], ["plan", "--help"], ["--version"]])
def test_a_short_command_into_a_closed_pipe_exits_141_saying_nothing(
        home: Home, args: list[str]) -> None:
    done = run_into_closed_pipe(args, _env(home))
    assert (done.returncode, done.stderr) == (EXIT_BROKEN_PIPE, "")


def test_an_error_is_still_an_error_with_stdout_closed(home: Home) -> None:
    done = run_into_closed_pipe(["machine", "get", "nosuch"], _env(home))
    assert done.returncode == 1
    assert "talprov: error:" in done.stderr


def test_the_demo_cleans_up_when_its_stdout_is_gone(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "TALPROV_"))}
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path))
    done = run_into_closed_pipe(["demo", *runs_small(), "--dir", str(workdir)], env)
    assert done.returncode == EXIT_BROKEN_PIPE, done.stderr
    assert "demo finished: machines created, checked and destroyed." in done.stderr
    assert "Traceback" not in done.stderr
    assert "Exception ignored" not in done.stderr
    assert not (workdir / "emulators.json").exists()
    assert runs.processes_mentioning(workdir) == []
    # Its store forgot every machine: a demo there again is not refused.
    again, output = runs.run_demo(tmp_path, *runs_small(), "--dir", str(workdir))
    assert again == 0, output


def runs_small() -> list[str]:
    return ["--platforms", "aws", "--control-planes", "1", "--workers", "0"]


def test_a_stderr_on_the_same_closed_pipe_goes_quiet_too() -> None:
    # `talprov demo 2>&1 | head`: once the table found stdout gone, the clean-up's
    # progress lines on stderr must not end the demo half-way.
    script = ("import sys\n"
              "from talprov.cli.output import lose_stdout, stdout_lost\n"
              "lose_stdout()\n"
              "print('clean-up progress', file=sys.stderr, flush=True)\n"
              "print('a table', flush=True)\n"
              "sys.exit(0 if stdout_lost() else 3)\n")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-c", script], stdout=write_end,
                              stderr=write_end, timeout=60, check=False)
    finally:
        os.close(write_end)
    assert done.returncode == 0
