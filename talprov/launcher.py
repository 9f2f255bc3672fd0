"""The ``talprov`` console script: stops cleanly on Ctrl-C or SIGTERM from its
first instant to its last.

Importing the CLI takes seconds (SQLAlchemy, pydantic models); Ctrl-C then used
to end in a Python traceback. This module imports nothing but
:mod:`talprov.stopping` (itself only ``signal`` and ``sys``): :func:`main`
installs the signal handling as its first statement, then imports and runs
:func:`talprov.cli.main`, ending any interruption the way that command does.

Nothing may come before the handlers: a command started with SIGINT ignored (bash
starts every background command of a script so) loses a SIGINT that arrives
first (CI: the first signal was lost when it came while this module still
imported talprov.processes), and one started without kills itself by it.
"""

from __future__ import annotations

import sys

from talprov.stopping import (
    command_word,
    exit_interrupted,
    ignore_stop_signals,
    sigterm_is_a_stop,
    stop_on_signals,
)


def main() -> None:
    """Run the ``talprov`` command; an interruption at any moment, start-up and
    the end included, ends with one line and exit 130 (Ctrl-C) or 143 (SIGTERM);
    0 for ``serve``, whose normal stop SIGTERM is, also before it listens."""
    try:
        try:
            # First, and inside the try: a signal right after it must find the
            # except below in place.
            stop_on_signals()
            sigterm_is_a_stop(command_word(sys.argv[1:]))
            from talprov.cli import main as run_cli

            run_cli()
        finally:
            # The command is over (its output written, its leases given back): a
            # signal now has nothing left to stop, and its handler, run while the
            # interpreter joins threads at exit, would print a traceback (or, once
            # the interpreter has reset it, kill the process by the signal).
            ignore_stop_signals(for_exit=True)
    except KeyboardInterrupt as exc:
        exit_interrupted(exc)
