"""Kills, faults, convergence and deletion on each emulated platform, round after
round (see tests/chaos/rounds.py); every round must end with no duplicate, no
leak, no unsettled request and nothing lost from the store."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tests.chaos.platforms import aws_platform, openstack_platform
from tests.chaos.rounds import ChaosRun, Platform, run_rounds
from tests.emulators.factory import FakeImageFactory
from tests.emulators.moto import MotoServer


def _run(platform_cm: AbstractContextManager[Platform], tmp_path: Path, seed: int,
         rounds: int, factory: FakeImageFactory, report: list[dict[str, Any]]) -> None:
    with platform_cm as platform:
        run = ChaosRun(platform, tmp_path, seed, factory.url)
        try:
            run_rounds(run, rounds)
        finally:
            report.append(run.tally.row())
            run.close()
    assert run.tally.kills >= rounds
    assert run.tally.faults > 0  # the proxy did fail calls


def test_chaos_aws(moto_server: MotoServer, image_factory: FakeImageFactory, tmp_path: Path,
                   chaos_seed: int, chaos_rounds: int,
                   chaos_report: list[dict[str, Any]]) -> None:
    _run(aws_platform(moto_server, chaos_seed), tmp_path, chaos_seed, chaos_rounds,
         image_factory, chaos_report)


def test_chaos_openstack(image_factory: FakeImageFactory, tmp_path: Path, chaos_seed: int,
                         chaos_rounds: int, chaos_report: list[dict[str, Any]]) -> None:
    _run(openstack_platform(chaos_seed), tmp_path, chaos_seed, chaos_rounds,
         image_factory, chaos_report)

