"""The ``talprov`` console script: stops cleanly on Ctrl-C or SIGTERM from its
first instant.

Importing the CLI takes seconds (SQLAlchemy, pydantic models); Ctrl-C then used
to end in a Python traceback. This module imports nothing heavy itself: it
installs the SIGTERM handling, then imports and runs :func:`talprov.cli.main`,
ending any interruption the way that command does.
"""

from __future__ import annotations

from talprov.processes import exit_interrupted, stop_on_sigterm


def main() -> None:
    """Run the ``talprov`` command; an interruption at any moment, start-up
    included, ends with one line and exit 130 (Ctrl-C) or 143 (SIGTERM)."""
    stop_on_sigterm()
    try:
        from talprov.cli import main as run_cli

        run_cli()
    except KeyboardInterrupt as exc:
        exit_interrupted(exc)
