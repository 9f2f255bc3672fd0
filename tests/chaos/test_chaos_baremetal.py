"""Kills, faults, convergence and deletion on bare metal: Redfish and IPMI BMCs behind
fault proxies, the boot server's HTTP endpoints, PXE boots stood in for (see
tests/chaos/baremetal.py for what is real and what is not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.chaos.baremetal import baremetal_platform
from tests.chaos.observed import loopback_only, rounds_timeout, run_rounds
from tests.emulators.factory import FakeImageFactory


@rounds_timeout(240)
def test_chaos_baremetal(image_factory: FakeImageFactory, tmp_path: Path, chaos_seed: int,
                         chaos_rounds: int, chaos_report: list[dict[str, Any]]) -> None:
    run_rounds(baremetal_platform(tmp_path, chaos_seed, image_factory.url), tmp_path,
               chaos_seed, chaos_rounds, image_factory.url, chaos_report)


__all__ = ["loopback_only"]  # an autouse fixture
