"""Fixtures for the AWS driver tests: a moto server and providers pointed at it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.moto import MotoServer, moto_process, moto_server
from tests.unit.aws.helpers import Harness

__all__ = ["moto_process", "moto_server"]


@pytest.fixture
def harness(moto_server: MotoServer, tmp_path: Path) -> Harness:
    return Harness(moto_server, tmp_path)


@pytest.fixture
def harness_factory(moto_server: MotoServer, tmp_path: Path) -> Callable[..., Harness]:
    def build(**config: Any) -> Harness:
        return Harness(moto_server, tmp_path, **config)

    return build
