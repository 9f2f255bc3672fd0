"""The demo's Image Factory: talprov.testing's stand-in, run as a child process on
127.0.0.1, so that the demo's config never sends talprov to factory.talos.dev and a
kept demo (``--keep``) keeps a factory for the commands run afterwards.

``python -m talprov.demo_platforms.factory`` serves until SIGTERM or SIGINT and
prints ``READY`` followed by its URL once it answers.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from talprov.demo_platforms.common import start_emulator
from talprov.stopping import ignore_stop_signals

READY = "image factory stand-in listening on "


class DemoFactory:
    """The stand-in's process; ``url`` is where it answers."""

    name = "image factory"

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self._emulator, self.url = start_emulator(
            "the image factory stand-in",
            [sys.executable, "-m", "talprov.demo_platforms.factory"],
            workdir / "factory.log", READY)

    def stop(self) -> None:
        """Stop the process. Idempotent."""
        self._emulator.stop()

    def pid(self) -> int:
        return self._emulator.process.pid

    def keep_hint(self) -> str:
        return f"Image Factory stand-in: {self.url}"


def main() -> None:
    from talprov.testing.factory import FakeImageFactory

    stop = threading.Event()

    def stopped(_signum: int, _frame: FrameType | None) -> None:
        ignore_stop_signals()  # the first stop counts
        stop.set()

    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    factory = FakeImageFactory().start()
    print(READY + factory.url, flush=True)
    stop.wait()
    factory.stop()
    ignore_stop_signals(for_exit=True)  # none may kill the exit


if __name__ == "__main__":
    main()
