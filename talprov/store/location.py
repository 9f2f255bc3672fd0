"""Where the store lives when nothing says otherwise."""

from __future__ import annotations

import os
from pathlib import Path


def default_store_url() -> str:
    """``sqlite:///$XDG_STATE_HOME/talprov/state.db`` (``~/.local/state`` by default).

    Creates the directory (owner-only) when missing; idempotent. The XDG spec
    says to ignore a relative ``XDG_STATE_HOME``, so this does.
    """
    base = os.environ.get("XDG_STATE_HOME", "")
    state_home = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    directory = state_home / "talprov"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"sqlite:///{directory / 'state.db'}"
