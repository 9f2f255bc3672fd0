"""Fixtures of the autoscaler tests: the upstream client, certificates, moto."""

from __future__ import annotations

import pytest

from tests.emulators.moto import moto_process, moto_server
from tests.unit.autoscaler.upstream import Upstream

__all__ = ["moto_process", "moto_server"]


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    return Upstream(tmp_path_factory.mktemp("externalgrpc"))
