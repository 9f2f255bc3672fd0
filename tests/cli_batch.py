"""Run many ``talprov`` commands in ONE Python process and print how each ended.

Usage: ``python tests/cli_batch.py BLOCKED COMMANDS_JSON``, where BLOCKED is a
comma-separated list of top-level modules to refuse (as if their package were not
installed; empty for none) and COMMANDS_JSON a JSON list of argument lists.
Prints one JSON list of ``{"args", "code", "stdout", "stderr"}``; an exception that
escapes ``main()`` is written to that command's stderr as a traceback (code -1).

It is a script, not a module of the test package, so that another interpreter
(the core-only venv of tests/unit/test_core_only_install.py) can run it: one
process instead of one per command keeps those runs to seconds.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import io
import json
import sys
import traceback
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class Uninstalled(importlib.abc.MetaPathFinder):
    """Refuses ``blocked`` top-level modules as a missing package would."""

    def __init__(self, blocked: set[str]) -> None:
        self.blocked = blocked

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name.split(".", maxsplit=1)[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def run(commands: list[list[str]]) -> list[dict[str, object]]:
    from talprov.cli import main

    results: list[dict[str, object]] = []
    for args in commands:
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            sys.argv = ["talprov", *args]
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                err.write(traceback.format_exc())
                code = -1
        results.append({"args": args, "code": code, "stdout": out.getvalue(),
                        "stderr": err.getvalue()})
    return results


if __name__ == "__main__":
    # tests/ itself must not shadow installed modules (it holds a package "providers").
    del sys.path[0]
    blocked = {name for name in sys.argv[1].split(",") if name}
    if blocked:
        sys.meta_path.insert(0, Uninstalled(blocked))
    print(json.dumps(run(json.loads(sys.argv[2]))))
