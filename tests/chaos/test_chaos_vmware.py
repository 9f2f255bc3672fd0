"""Kills, faults, convergence and deletion on vSphere (vcsim), round after round
(see tests/chaos/rounds.py and tests/chaos/hypervisors.py), at the suite's 20% of
faulted calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.chaos.hypervisors import vsphere_platform
from tests.chaos.observed import loopback_only, rounds_timeout, run_rounds
from tests.emulators.factory import FakeImageFactory


@rounds_timeout(240)
def test_chaos_vmware(image_factory: FakeImageFactory, tmp_path: Path, chaos_seed: int,
                      chaos_rounds: int, chaos_report: list[dict[str, Any]]) -> None:
    run_rounds(vsphere_platform(tmp_path, chaos_seed), tmp_path, chaos_seed, chaos_rounds,
               image_factory.url, chaos_report)


__all__ = ["loopback_only"]  # an autouse fixture
