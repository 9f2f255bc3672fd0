"""``talprov serve`` as a real process, for the end-to-end tests and the benchmark."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.helpers import SEEN_OUTPUT

READY_TIMEOUT = 30.0


class ServeProcess:
    """One ``talprov serve`` process; its stderr is collected line by line."""

    def __init__(self, env: dict[str, str], cwd: Path, args: Sequence[str] = (),
                 global_args: Sequence[str] = ()) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "talprov", *global_args, "serve", "--listen", "127.0.0.1:0",
             *args],
            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(READY_TIMEOUT) or not self.url:
            self.kill()
            raise AssertionError("talprov serve did not start:\n" + self.output())

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            # Under service.log_format json the line is a JSON object.
            text = json.loads(line)["message"] if line.startswith("{") else line
            if "listening on " in text and not self.url:
                self.url = text.split("listening on ", 1)[1].strip()
                self._ready.set()
        self._ready.set()

    def output(self) -> str:
        return "".join(self.lines)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self._finish(timeout)

    def kill(self) -> int:
        """SIGKILL: the process gets no chance to clean up."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        return self._finish(10)

    def _finish(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        SEEN_OUTPUT.append(self.output())
        return code


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
