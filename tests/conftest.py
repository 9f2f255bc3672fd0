"""Fixtures shared by the whole suite."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulators.factory import image_factory  # noqa: F401 - fixture
from tests.emulators.postgres import postgres_server, postgres_url  # noqa: F401 - fixtures
from tests.helpers import (
    CANARY_CONFIG,
    CANARY_CREDENTIAL,
    SEEN_OUTPUT,
    Home,
    write_plugin_dist,
)


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sys.path entry whose dist-info registers the test provider ``file``."""
    directory = write_plugin_dist(tmp_path_factory.mktemp("plugins"))
    sys.path.insert(0, str(directory))
    return directory


@pytest.fixture
def home(tmp_path: Path, plugin_dir: Path) -> Home:
    """A throwaway installation with one fake provider instance ``fake``."""
    h = Home(root=tmp_path, plugin_dir=plugin_dir)
    h.providers["fake"] = {"type": "file", "path": h.cloud_path(), "boot_listings": 1,
                           "api_secret": CANARY_CREDENTIAL}
    h.write_config()
    return h


class _CollectingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            SEEN_OUTPUT.append(self.format(record))
        except Exception:
            return


@pytest.fixture(scope="session", autouse=True)
def canary_watch() -> Iterator[None]:
    """Collect every log record of the session; fail at the end if a canary leaked."""
    handler = _CollectingHandler(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    yield
    root.removeHandler(handler)
    leaked = [text for text in SEEN_OUTPUT if CANARY_CONFIG in text or CANARY_CREDENTIAL in text]
    assert not leaked, f"a canary secret leaked into output or logs: {leaked[0][:500]}"


@pytest.fixture(autouse=True)
def talprov_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command lines talprov prints start with ``talprov``, as for a user
    whose PATH finds it: under pytest, sys.argv[0] is pytest's, not talprov's
    (tests/unit/test_cli_invoked.py tests the real choice)."""
    monkeypatch.setattr("talprov.cli.invoked.talprov_command", lambda: "talprov")
