"""How the user's shell runs this talprov: the start of every command line talprov
prints for the user to run (the demo's hints and clean-up line, "`talprov
reconcile` carries it on", ...).

After the README's quick start (`.venv/bin/talprov demo`) `talprov` is not on
PATH, so a printed ``talprov destroy demo`` pasted into the shell found no
command and cleaned nothing. Every such line therefore starts with
:func:`talprov_command`: ``talprov`` when PATH finds this very program, else
the absolute path of the running script (absolute because the demo's clean-up
line changes directory first).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def talprov_command(argv0: str | None = None, path: str | None = None) -> str:
    """The word that runs this talprov from the user's shell, quoted for it.

    ``talprov`` when ``shutil.which("talprov")`` (on ``path``, default $PATH)
    resolves to the same file as ``argv0`` (default ``sys.argv[0]``); else
    ``argv0`` resolved to an absolute path, quoted with :func:`shlex.quote`.
    Run as ``python -m talprov`` (``argv0`` is then ``__main__.py``), it is
    ``python -m talprov`` with the running interpreter. Reads only the file
    system; never raises.
    """
    script = argv0 if argv0 is not None else sys.argv[0]
    if not script or script == "-c" or Path(script).name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m talprov"
    running = _resolved(script)
    on_path = shutil.which("talprov", path=path if path is not None else os.environ.get("PATH"))
    if on_path is not None and _resolved(on_path) == running:
        return "talprov"
    return shlex.quote(str(running))


def talprov_line(arguments: str) -> str:
    """``arguments`` (already shell words, e.g. ``"destroy demo --wait --yes"``)
    after :func:`talprov_command`. Never raises."""
    return f"{talprov_command()} {arguments}"


def _resolved(script: str) -> Path:
    """``script`` as an absolute path with symlinks resolved (as far as they exist)."""
    found = script if os.sep in script else (shutil.which(script) or script)
    return Path(found).resolve()
