"""The chaos suite's settings and shared emulators.

``TALPROV_CHAOS_SEED`` (default 1) replays a run; ``TALPROV_CHAOS_ROUNDS``
(default 2, the CI mode; the long mode is 20 or more) sets the rounds per
platform; ``TALPROV_CHAOS_REPORT`` names a JSON file that receives one row per
platform (``bench/chaos_report.py`` prints it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.factory import image_factory  # noqa: F401
from tests.emulators.moto import moto_process, moto_server  # noqa: F401

CI_ROUNDS = 2


@pytest.fixture(scope="session")
def chaos_seed() -> int:
    return int(os.environ.get("TALPROV_CHAOS_SEED", "1"))


@pytest.fixture(scope="session")
def chaos_rounds() -> int:
    return int(os.environ.get("TALPROV_CHAOS_ROUNDS", str(CI_ROUNDS)))


@pytest.fixture(scope="session")
def chaos_report() -> Iterator[list[dict[str, Any]]]:
    """Rows the platform tests append; written to TALPROV_CHAOS_REPORT at the end."""
    rows: list[dict[str, Any]] = []
    yield rows
    target = os.environ.get("TALPROV_CHAOS_REPORT")
    if target:
        Path(target).write_text(json.dumps(rows, indent=2))


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers and replicas inherit the environment: no proxy settings may send them
    elsewhere than the loopback emulators."""
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
