"""What of ``/metrics`` a token scoped to some provider instances may read.

Kept apart from how the exposition is produced (``talprov.service.metrics``):
it works on the Prometheus text format itself, so it holds whatever library
renders the text. A sample whose ``provider`` label names an instance outside
the token's scope is left out; samples without that label (process-wide
counters) and the ``# HELP``/``# TYPE`` lines stay.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# One label pair of a sample line; values escape \\, \" and \n (text format 0.0.4).
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _provider_of(line: str) -> str | None:
    """The unescaped ``provider`` label of a sample line, or ``None``."""
    start = line.find("{")
    if start < 0 or line.startswith("#"):
        return None
    for match in _LABEL.finditer(line, start):
        if match[1] == "provider":
            return re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m[0]], match[2])
    return None


def scoped_exposition(text: str, allows_provider: Callable[[str], bool]) -> str:
    """``text`` without the samples of provider instances ``allows_provider`` refuses.

    Pure; the input's line order and trailing newline are kept.
    """
    kept = []
    for line in text.splitlines(keepends=True):
        provider = _provider_of(line)
        if provider is None or allows_provider(provider):
            kept.append(line)
    return "".join(kept)
