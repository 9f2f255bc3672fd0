"""ONE stop signal stops a talprov command, whenever it comes once talprov's code
runs, also when the command was started with SIGINT ignored, as bash starts every
background command of a script (`talprov ... &`: no job control, so SIGINT and
SIGQUIT are set to SIG_IGN). CI: the first SIGINT or SIGTERM was sometimes lost,
the command ran on until a second one.

A signal that comes while the interpreter itself still starts (before the first
line of talprov runs) is out of talprov's reach: ignored then, the kernel drops
it. These tests send theirs from the moment the console script starts
importing talprov on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Home

#: What the console script pip writes does, with the moment it starts importing
#: the launcher written to argv[1] (CLOCK_MONOTONIC: the same clock in every
#: process). Before that clock starts: finding the talprov package and loading
#: what the launcher needs to install its handlers, ``signal`` and
#: talprov.stopping, a fraction of a millisecond no launcher can do without
#: (test_the_launcher_imports_nothing_before_its_handlers keeps it that small).
CONSOLE_SCRIPT = """\
import signal, sys, time, talprov
try:
    import talprov.stopping
except ImportError:  # a talprov from before it
    pass
with open(sys.argv[1], "w") as started:
    started.write(repr(time.monotonic()))
sys.argv = ["talprov", *sys.argv[3:]]
from talprov.launcher import main
sys.exit(main())
"""

#: As above, but SIGINT is sent by the process itself when the import of module
#: argv[1] starts (the first time): a signal at that exact moment.
SIGNAL_AT_IMPORT = """\
import os, signal, sys
wanted = sys.argv[1]

class SignalAtImport:
    def find_spec(self, name, path=None, target=None):
        if name == wanted:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, SignalAtImport())
sys.argv = ["talprov", *sys.argv[2:]]
from talprov.launcher import main
sys.exit(main())
"""


def sigint_ignored() -> None:
    """In the child before exec: SIGINT ignored, as bash leaves it for `cmd &`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("module", ["socket", "subprocess", "threading", "talprov.cli"])
def test_sigint_when_the_command_imports_a_module_stops_it(home: Home, module: str) -> None:
    # Before the fix the launcher imported socket, subprocess and threading (with
    # talprov.processes) before it installed its handlers: a SIGINT then was
    # ignored as inherited, and `--version` went on to exit 0.
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_AT_IMPORT, module, "--version"],
        env=home.env(), cwd=home.root, capture_output=True, text=True, timeout=60,
        preexec_fn=sigint_ignored, check=False)
    assert done.returncode == 130, (done.stdout, done.stderr)
    assert done.stderr == "talprov: interrupted\n"


def test_the_launcher_imports_nothing_before_its_handlers(home: Home) -> None:
    # The console script's `from talprov.launcher import main` runs before main()
    # can install anything: all it loads is a window in which a signal is lost.
    probe = ("import sys; before = set(sys.modules); import talprov.launcher; "
             "print(' '.join(sorted(set(sys.modules) - before)))")
    done = subprocess.run([sys.executable, "-c", probe], env=home.env(), capture_output=True,
                          text=True, timeout=60, check=True)
    assert set(done.stdout.split()) <= {"__future__", "signal", "talprov", "talprov.launcher",
                                        "talprov.stopping"}, done.stdout


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


#: Milliseconds after the launcher's import starts at which the stress test sends
#: its signal: before the fix the launcher's own imports (talprov.processes:
#: socket, subprocess, threading) took ~20 ms unloaded with SIGINT still ignored;
#: then the CLI's import, the config's load, the watch.
OFFSETS_MS = (3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 60, 100, 200, 400, 800, 1500, 2500)
#: Before this, a busy machine may not have run the launcher's few statements yet
#: (a runnable process can wait a few ms for a core): see the module's docstring.
LAUNCHER_WINDOW_MS = 5


def sigint_caught(pid: int) -> bool:
    """Whether process ``pid`` has a handler for SIGINT now (not SIG_IGN, SIG_DFL)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


def one_stop(home: Home, started_file: Path, signum: int, offset_ms: int) -> str | None:
    """Start the command, send ``signum`` ``offset_ms`` after the launcher's import
    starts; None when it ended as it must, else what went wrong (with whether the
    handler was in place when the signal was sent)."""
    worker = subprocess.Popen(
        [sys.executable, "-c", CONSOLE_SCRIPT, str(started_file), "--",
         "machine", "list", "--watch", "1"],
        env=home.env(), cwd=home.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        # What bash does between fork and exec; this test starts no thread.
        text=True, preexec_fn=sigint_ignored)  # noqa: PLW1509
    try:
        while not started_file.exists() or not started_file.read_text():
            assert worker.poll() is None, worker.communicate()
            time.sleep(0.0002)
        at = float(started_file.read_text()) + offset_ms / 1000
        time.sleep(max(0.0, at - time.monotonic()))
        caught = sigint_caught(worker.pid)
        sent = time.monotonic()
        os.kill(worker.pid, signum)
        while alive(worker.pid) and time.monotonic() - sent < 5:
            time.sleep(0.01)
        ran_on = alive(worker.pid)
        if ran_on:
            worker.kill()
        _, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    what = (f"{signal.Signals(signum).name} at {offset_ms} ms (+{(sent - at) * 1000:.1f}, "
            f"handler {'in place' if caught else 'not yet'})")
    if ran_on:
        return f"lost: {what}"
    by = " (SIGTERM)" if signum == signal.SIGTERM else ""
    if worker.returncode != 128 + signum or err != f"talprov: interrupted{by}\n":
        return f"{what}: exit {worker.returncode} {err!r}"
    return None


def test_one_signal_stops_a_command_started_as_bash_starts_cmd_and_at_any_moment(
        home: Home, tmp_path: Path) -> None:
    # A command that runs until it is stopped, started with SIGINT ignored as bash
    # starts `cmd &`; ONE SIGINT or SIGTERM at each moment; each run must end
    # within seconds with 130 or 143 and the one line. Before the fix 2 or 3 of
    # these 19 SIGINTs were lost (the command ran on) and SIGTERMs killed it.
    failures = []
    for n, offset in enumerate(OFFSETS_MS):
        signum = (signal.SIGINT, signal.SIGTERM)[n % 2]
        failure = one_stop(home, tmp_path / f"started-{n}", signum, offset)
        if failure is not None and "not yet" in failure and offset >= LAUNCHER_WINDOW_MS:
            # A loaded machine may have held the process off a core for ms just
            # then: once more. A window of the launcher's comes back every time.
            failure = one_stop(home, tmp_path / f"again-{n}", signum, offset)
        if failure is not None and ("in place" in failure or offset >= LAUNCHER_WINDOW_MS):
            failures.append(failure)
    assert not failures, f"{len(failures)} of {len(OFFSETS_MS)}: {failures}"
