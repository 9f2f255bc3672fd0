"""The Talos versions talprov knows, and which version's rules apply to a request.

talprov carries the rules of each Talos minor line from v1.9 to v1.13 (its
machine-config schema, the PXE kernel command line, the platform table). A
request for a version newer than the newest line talprov knows (say v1.14.0)
is served with the newest rules and a warning. A new request for a version
older than the oldest line, or a malformed one, never gets this far:
``MachineRequest`` refuses it (``talos_version_problem``); a request recorded
before that rule (read back from a store) still gets the oldest rules and a
warning.

Comparisons follow Talos's imager quirks (``pkg/machinery/imager/quirks``),
which drop the pre-release part: ``v1.11.0-alpha.1`` counts as ``v1.11.0``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

from talprov.providers.errors import InvalidRequest
from talprov.providers.types import SUPPORTED_TALOS_LINES, malformed_talos_version

log = logging.getLogger(__name__)

#: The version talprov uses when a request or spec names none, and in examples and the demo.
DEFAULT_TALOS_VERSION = "v1.13.9"
#: The minor lines whose rules talprov carries, oldest first.
SUPPORTED_LINES = SUPPORTED_TALOS_LINES


@dataclass(frozen=True, order=True)
class TalosVersion:
    """A parsed Talos version: ``v<major>.<minor>.<patch>[-<prerelease>]``."""

    major: int
    minor: int
    patch: int
    prerelease: str = ""

    @property
    def core(self) -> tuple[int, int, int]:
        """The numbers Talos's quirks compare (the pre-release part dropped)."""
        return (self.major, self.minor, self.patch)

    @property
    def line(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def at_least(self, major: int, minor: int, patch: int = 0) -> bool:
        return self.core >= (major, minor, patch)

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}" + (
            f"-{self.prerelease}" if self.prerelease else "")


def parse_version(text: str, field: str = "talos_version") -> TalosVersion:
    """``text`` as a :class:`TalosVersion`. Raises ``InvalidRequest`` naming ``field``
    for a malformed one (any line parses: stored requests may name an old one). Pure."""
    problem = malformed_talos_version(text)
    if problem is not None:
        raise InvalidRequest(problem, field=field)
    core, _, prerelease = text[1:].partition("-")
    major, minor, patch = (int(part) for part in core.split("."))
    return TalosVersion(major, minor, patch, prerelease)


def rules_line(version: TalosVersion) -> tuple[int, int]:
    """The minor line whose rules apply to ``version`` (logs a warning outside the known range)."""
    if version.line in SUPPORTED_LINES:
        return version.line
    _warn_unknown(version.line)
    return SUPPORTED_LINES[-1] if version.line > SUPPORTED_LINES[-1] else SUPPORTED_LINES[0]


def unknown_version_warning(version: TalosVersion) -> str | None:
    """The warning a request for ``version`` deserves, or None for a line talprov knows. Pure."""
    if version.line in SUPPORTED_LINES:
        return None
    newer = version.line > SUPPORTED_LINES[-1]
    used = SUPPORTED_LINES[-1] if newer else SUPPORTED_LINES[0]
    return (f"talprov does not know Talos v{version.major}.{version.minor}: "
            f"using the rules of v{used[0]}.{used[1]}, the {'newest' if newer else 'oldest'} "
            "it has")


@cache
def _warn_unknown(line: tuple[int, int]) -> None:
    # Once per line and process: the rules are looked up for every document and boot.
    message = unknown_version_warning(TalosVersion(line[0], line[1], 0))
    log.warning("%s", message)
