"""Counts in CLI output agree with their noun (QA: "round done: 1 requests worked on")."""

from __future__ import annotations

import pytest

from talprov.words import counted


@pytest.mark.parametrize(("count", "noun", "plural", "said"), [
    (0, "request", None, "0 requests"),
    (1, "request", None, "1 request"),
    (2, "request", None, "2 requests"),
    (1, "Talos version", None, "1 Talos version"),
    (3, "control plane", None, "3 control planes"),
    (1, "attempt", None, "1 attempt"),
    (2, "machine", None, "2 machines"),
    (1, "child", "children", "1 child"),
    (2, "child", "children", "2 children"),
])
def test_counted(count: int, noun: str, plural: str | None, said: str) -> None:
    assert counted(count, noun, plural) == said
