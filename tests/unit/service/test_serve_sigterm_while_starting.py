"""``talprov serve`` stopped by SIGTERM before it said "listening" exits 0; by
Ctrl-C, 130; either says "stopped", as after it listens.

QA: a SIGTERM during the start-up ended serve with 143 (an interruption), while
the docs say SIGTERM is serve's graceful stop, exit 0; and a Ctrl-C then said
"talprov: interrupted", but "stopped" once serve listened. Each case holds the
start at one step (a hook that says so, then waits) and sends the signal there.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest

from talprov.stopping import command_word
from tests.helpers import SEEN_OUTPUT, Home
from tests.unit.service.conftest import TOKENS

# Runs the console script's entry point with one step of serve's start held:
# argv[1] the module, argv[2] the attribute (Class.method allowed), then the command line.
HOLD = """
import importlib, sys, time
module, attribute = sys.argv[1], sys.argv[2]
owner = importlib.import_module(module)
*path, name = attribute.split(".")
for part in path:
    owner = getattr(owner, part)
original = getattr(owner, name)
def held(*args, **kwargs):
    sys.stderr.write("HELD\\n")
    sys.stderr.flush()
    time.sleep(3)  # SIGTERM comes meanwhile; a handler that only notes it lets it go on
    return original(*args, **kwargs)
setattr(owner, name, held)
sys.argv = ["talprov", *sys.argv[3:]]
from talprov.launcher import main
main()
"""


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
@pytest.mark.parametrize(("module", "attribute"), [
    ("talprov.cli", "setup_logging"),  # the root command, before serve runs
    ("talprov.service.app", "create_app"),  # serve's own start
    ("talprov.cli.serve", "start_boot_servers"),  # bound, about to serve
    ("uvicorn", "Server.run"),  # serve's handlers in place, uvicorn's not yet
])
def test_a_stop_before_listening_says_stopped(home: Home, module: str, attribute: str,
                                              signum: signal.Signals, exit_code: int) -> None:
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.1})
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, module, attribute, "serve", "--listen", "127.0.0.1:0"],
        env=home.env(), cwd=home.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    lines: list[str] = []
    held = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("HELD"):
                held.set()
        held.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert held.wait(60), "".join(lines)
        process.send_signal(signum)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        SEEN_OUTPUT.append("".join(lines))
    output = "".join(lines)
    assert code == exit_code, output
    assert output.rstrip().endswith("stopped"), output
    assert "Traceback" not in output
    assert "interrupted" not in output


@pytest.mark.parametrize(("argv", "word"), [
    (["serve"], "serve"),
    (["-vv", "--config", "serve", "--log-format=json", "machine", "list"], "machine"),
    (["--store", "sqlite:///x", "serve", "--listen", ":0"], "serve"),
    (["baremetal", "--file", "serve", "serve"], "baremetal serve"),
    (["-v", "baremetal", "-p", "rack1", "serve", "-v"], "baremetal serve"),
    (["baremetal", "list"], "baremetal"),
    (["baremetal"], "baremetal"),
    (["--version"], None),
    ([], None),
])
def test_the_command_word_is_found_before_click_parses(argv: list[str],
                                                       word: str | None) -> None:
    assert command_word(argv) == word
