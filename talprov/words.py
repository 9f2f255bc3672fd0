"""Counts in words people read: ``1 request``, ``2 requests``.

One function for every count that CLI output, health lines and notes show, so
that none says "1 requests".
"""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun`` agreeing: the noun as given for 1, else ``plural``
    (default: the noun with an ``s``). Pure."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
