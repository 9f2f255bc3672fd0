"""Every command's --help is plain text for people (QA C5): no reStructuredText
markup (``created`` showed its double backticks), and the commands people start
with carry an Examples: section whose lines click keeps as written."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from talprov.cli import cli

#: Commands whose --help shows examples (a path of command names under talprov).
WITH_EXAMPLES = [("plan",), ("apply",), ("status",), ("scale",), ("destroy",),
                 ("machine", "create"), ("config", "check"), ("serve",), ("set",),
                 ("set", "list"), ("set", "get"), ("set", "scale"), ("reconcile",)]

#: reStructuredText that means nothing on a terminal: ``literal``, :role:`x`, `x`_.
RST = re.compile(r"``|:(?:func|class|meth|mod|data|attr|exc|ref):`|`_\b")


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name)


def help_of(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", list(commands()), ids=lambda p: " ".join(p) or "talprov")
def test_no_help_shows_restructuredtext(path: tuple[str, ...]) -> None:
    shown = help_of(path)
    assert not RST.search(shown), shown


@pytest.mark.parametrize("path", WITH_EXAMPLES, ids=" ".join)
def test_examples_are_shown_line_by_line(path: tuple[str, ...]) -> None:
    shown = help_of(path)
    parts = re.split(r"\n +Examples:\n", shown, maxsplit=1)
    assert len(parts) == 2, shown
    examples = parts[1].split("\n\n", 1)[0].splitlines()
    # Each a talprov command line of its own, as click kept it (a \b block).
    assert examples, shown
    assert all(line.strip().startswith(("talprov ", "cat ")) for line in examples), examples
    assert any(" ".join(("talprov", *path)) in line for line in examples), examples


def test_serve_says_its_worker_process_interrupts_its_round() -> None:
    # docs/service.md, and serve_worker: the default process-mode worker breaks
    # its round off at once; only worker_mode: thread finishes it.
    shown = " ".join(help_of(("serve",)).split())
    assert "the current reconcile pass finishes" not in shown
    assert "the reconcile worker process interrupts its round at once" in shown
    assert "worker_mode: thread the round is finished instead" in shown
