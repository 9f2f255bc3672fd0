"""Kills, faults, convergence and deletion on vSphere (vcsim), round after round (see
tests/chaos/rounds.py and tests/chaos/hypervisors.py; the fault rate is vSphere's own,
VSPHERE_FAULT_RATE, and a round may take longer to settle: its steps are chattier).

Long mode only (``TALPROV_CHAOS_ROUNDS`` set, as bench/chaos_report.py does): two
rounds take about five minutes, more than the CI budget of the whole suite allows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.hypervisors import VSPHERE_SETTLE_SECONDS, vsphere_platform
from tests.chaos.observed import loopback_only, rounds_timeout, run_rounds
from tests.emulators.factory import FakeImageFactory


@pytest.mark.skipif("TALPROV_CHAOS_ROUNDS" not in os.environ,
                    reason="vSphere chaos runs in the long mode (bench/chaos_report.py)")
@rounds_timeout(500)
def test_chaos_vmware(image_factory: FakeImageFactory, tmp_path: Path, chaos_seed: int,
                      chaos_rounds: int, chaos_report: list[dict[str, Any]]) -> None:
    run_rounds(vsphere_platform(tmp_path, chaos_seed), tmp_path, chaos_seed, chaos_rounds,
               image_factory.url, chaos_report, settle_seconds=VSPHERE_SETTLE_SECONDS)


__all__ = ["loopback_only"]  # an autouse fixture
