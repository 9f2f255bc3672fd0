"""Rendering command results as a table, JSON or YAML, with secrets masked."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import select
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from talprov.cli.numbers import WATCH_SECONDS
from talprov.secrets import redact
from talprov.stopping import exit_interrupted
from talprov.talos.goyaml import resolves_to_non_string
from talprov.timestamps import rfc3339

FORMATS = ("table", "json", "yaml")
#: What a table shows for a missing value.
EMPTY = "-"
output_option = click.option(
    "-o", "--output", type=click.Choice(FORMATS), default="table", show_default=True,
    help="Output format; json and yaml are stable for scripts.",
)


#: 128 + SIGPIPE: stdout was closed (`talprov ... | head -1`). What a shell shows
#: for a program the signal ended (`yes | head -1`), as 130 and 143 are for
#: SIGINT and SIGTERM; Python ignores SIGPIPE, so talprov exits with it itself.
EXIT_BROKEN_PIPE = 141

#: Set once stdout's reader has gone (an Event: set from any thread, never cleared).
_STDOUT_LOST = threading.Event()


def closed_stdout(exc: BaseException) -> bool:
    """Whether ``exc`` is a write to a stdout whose reader has gone (EPIPE, and
    stdout's pipe reports the error), not a broken connection to some server.
    Reads only."""
    if not isinstance(exc, OSError) or exc.errno != errno.EPIPE:
        return False
    return _reader_gone(sys.stdout)


def _reader_gone(stream: Any) -> bool:
    """Whether ``stream``'s file is a pipe (or socket) nobody reads any more."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return False  # an in-process runner's buffer has no reader to lose
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def lose_stdout() -> None:
    """From now on, what talprov writes to stdout goes nowhere: its reader has gone.
    Quiet as a program SIGPIPE ends: no traceback, and none when Python flushes
    stdout at exit either. So does stderr when its reader has gone too
    (`talprov demo 2>&1 | head`): the demo's clean-up still says its progress
    there. Idempotent; never raises."""
    _STDOUT_LOST.set()
    if _reader_gone(sys.stderr):
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            _to_devnull(sys.stderr.fileno())
    try:
        _to_devnull(sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout until exit


def _to_devnull(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def stdout_lost() -> bool:
    """Whether :func:`lose_stdout` was called: the command should exit
    :data:`EXIT_BROKEN_PIPE` once its work is done."""
    return _STDOUT_LOST.is_set()


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting also what Go's yaml.v3 (YAML 1.2) takes for
    no string: PyYAML resolves as YAML 1.1, where ``0008`` (no octal), ``1e3`` or
    ``0o17`` are strings written plain, but yaml.v3 reads numbers (a store's schema
    revision, an id made of digits). One rule, goyaml's, decides."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "'" if resolves_to_non_string(text) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def stdout_is_terminal() -> bool:
    """Whether a person watches stdout (tables get its width, --watch redraws)."""
    return sys.stdout.isatty()


def terminal_width() -> int | None:
    """The width tables are drawn to: ``COLUMNS`` when it is set to a positive
    number, on a terminal or not (``COLUMNS=80 talprov demo | tee log`` gets the
    80-column table, as ``ls`` would); else the terminal's width when stdout is
    one; else None (a pipe or a log: no limit)."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdecimal() and int(columns) > 0:
        return int(columns)
    return shutil.get_terminal_size((200, 25)).columns if stdout_is_terminal() else None


def emit(data: Any, fmt: str, *, columns: Sequence[str] | None = None,
         title: str | None = None) -> None:
    """Print ``data`` (a list of rows or one mapping) in ``fmt``."""
    if fmt == "json":
        click.echo(redact(json.dumps(data, indent=2, default=str)))
        return
    if fmt == "yaml":
        click.echo(redact(yaml.dump(json.loads(json.dumps(data, default=str)),
                                    Dumper=_Dumper, sort_keys=False)).rstrip())
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        click.echo("(none)")
        return
    cells = [{col: redact(_cell(row.get(col))) for col in columns or rows[0].keys()}
             for row in rows]
    # A column empty in every row says nothing and costs width the others need.
    cols = [col for col in cells[0] if any(c[col] != EMPTY for c in cells)] or list(cells[0])
    table = Table(title=title, show_lines=False, header_style="bold", box=None,
                  pad_edge=False)
    terminal = shutil.get_terminal_size((200, 25))
    width = terminal_width() or 200  # a pipe or a CI log without COLUMNS: 200
    widths = _column_widths(cells, cols, width - COLUMN_GAP * (len(cols) - 1))
    for col, column_width in zip(cols, widths, strict=True):
        table.add_column(col, width=column_width, overflow="fold")
    for c in cells:
        # Cells are text, never rich markup: "talprov[proxmox]", "[fd00::1]:8006" and
        # label values in brackets must print as they are.
        table.add_row(*(Text(c[col]) for col in cols))
    # Where even the least widths do not fit, the table is drawn wider than the
    # terminal rather than cut.
    drawn = sum(widths) + COLUMN_GAP * (len(cols) - 1)
    _Console(soft_wrap=False, width=max(width, drawn), height=terminal.lines).print(table)


class _Console(Console):
    """rich's console, leaving a closed stdout to talprov: rich's own answer is
    exit 1, where talprov exits 141, and the demo still cleans up first."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


#: Spaces between two columns (rich's padding of one on each side).
COLUMN_GAP = 2


def least_width(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> int:
    """The narrowest a table of ``rows`` in ``columns`` can be drawn without cutting
    a word: each column as wide as its longest word, plus the gaps. Pure."""
    cells = [{col: redact(_cell(row.get(col))) for col in columns} for row in rows]
    return sum(_least(cells, col) for col in columns) + COLUMN_GAP * (len(columns) - 1)


def _least(cells: Sequence[Mapping[str, str]], col: str) -> int:
    # The longest word of a column is its least width: ids, addresses and stages
    # are never cut; text with spaces (errors, notes) wraps at spaces instead.
    return max(len(word) for c in cells for word in [col, *c[col].split()])


def _column_widths(cells: Sequence[Mapping[str, str]], cols: Sequence[str],
                   available: int) -> list[int]:
    """Each column's width: its longest cell when all fit in ``available``, else the
    widest columns narrowed in turn (never below their longest word) until they
    fit or cannot narrow further. Pure.

    Set here rather than left to rich, which, given least widths, drew tables
    wider than its own width and cut their last column (QA: the demo's table).
    """
    least = [_least(cells, col) for col in cols]
    widths = [max(len(col), *(len(c[col]) for c in cells)) for col in cols]
    excess = sum(widths) - available
    while excess > 0:
        shrinkable = [i for i in range(len(cols)) if widths[i] > least[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: (widths[i], -i))
        widths[widest] -= 1
        excess -= 1
    return widths


def _cell(value: Any) -> str:
    # ", " rather than "," so that long label lists wrap between items.
    if value is None:
        return EMPTY
    if isinstance(value, bool):  # people read yes/no; JSON and YAML keep the boolean
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or EMPTY
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or EMPTY
    return str(value)


class _Captured(io.StringIO):
    """Collects what a render prints, answering isatty as the real stdout does, so
    that tables get the terminal's width."""

    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self._terminal = terminal

    def isatty(self) -> bool:
        return self._terminal


def watch_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--watch SECONDS``: redraw until Ctrl-C."""
    return click.option(
        "--watch", "watch_seconds", type=WATCH_SECONDS, metavar="SECONDS",
        help=f"Redraw every SECONDS ({WATCH_SECONDS.range_text()}) until Ctrl-C; when "
        "stdout is not a terminal, print a new copy only when something changed. "
        "With -o json: JSON Lines, one compact "
        "document per line, printed when it changed; with -o yaml: a YAML stream, one "
        "document per change.")(fn)


def watch(render: Callable[[], bool | None], seconds: float | None,
          sleep: Callable[[float], None] | None = None, *, fmt: str = "table") -> None:
    """Run ``render`` once, or, with ``seconds``, again every ``seconds`` until
    Ctrl-C, or until ``render`` returns True (what it watched is gone: its last
    output says so and is printed as every other). On a terminal the screen is
    redrawn; elsewhere (a log, a pipe) a copy
    headed by the time is printed only when the output changed. Output ``fmt``
    json or yaml stays machine-readable wherever it goes: JSON Lines (each
    document on one line) or a YAML stream (``--- # time`` starts each document),
    printed only when it changed. Ctrl-C (or SIGTERM) ends it as it ends every
    talprov command: ``talprov: interrupted`` on stderr, exit 130 (143)."""
    if seconds is None:
        render()
        return
    pause = sleep or time.sleep
    terminal = stdout_is_terminal()
    last: str | None = None
    try:
        while True:
            captured = _Captured(terminal)
            with contextlib.redirect_stdout(captured):
                last_one = render()
            text = captured.getvalue()
            stamp = rfc3339(datetime.now(UTC).replace(microsecond=0))
            if fmt == "json":
                # A parser reads one document per line; the pretty form spans many.
                text = json.dumps(json.loads(text), separators=(",", ":"),
                                  ensure_ascii=False) + "\n"
                if text != last:
                    click.echo(text, nl=False)
            elif fmt == "yaml":
                if text != last:
                    click.echo(f"--- # {stamp}\n{text}", nl=False)
            elif terminal:
                click.clear()
                click.echo(f"every {seconds:g}s, {stamp} (Ctrl-C to stop)\n{text}", nl=False)
            elif text != last:
                click.echo(f"--- {stamp}\n{text}", nl=False)
            last = text
            if last_one:
                return
            pause(seconds)
    except KeyboardInterrupt as exc:
        exit_interrupted(exc)
