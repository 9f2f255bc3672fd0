"""How long work (downloads, uploads, image imports) reports how far it got."""

from __future__ import annotations

from collections.abc import Callable

#: Receives progress of long work: (task, done, total). ``total`` is None when unknown.
Progress = Callable[[str, int, "int | None"], None]


def no_progress(task: str, done: int, total: int | None) -> None:
    """A Progress that shows nothing."""
