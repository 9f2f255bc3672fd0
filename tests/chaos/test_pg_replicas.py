"""Two ``talprov serve`` replicas on one PostgreSQL store, on AWS behind the fault
proxy, one replica SIGKILLed per phase (see tests/chaos/pg_replicas.py); every
round must end with no duplicate, no leak, no unsettled request, nothing lost from
the store, and no API answer but the expected ones and 503."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.chaos.pg_replicas import ReplicaChaosRun
from tests.chaos.platforms import aws_platform
from tests.chaos.rounds import run_rounds
from tests.emulators.factory import FakeImageFactory
from tests.emulators.moto import MotoServer


def test_chaos_pg_replicas(moto_server: MotoServer, image_factory: FakeImageFactory,
                           postgres_url: str, tmp_path: Path, chaos_seed: int,
                           chaos_rounds: int, chaos_report: list[dict[str, Any]]) -> None:
    with aws_platform(moto_server, chaos_seed) as platform:
        run = ReplicaChaosRun(platform, tmp_path, chaos_seed, image_factory.url,
                              store_url=postgres_url)
        try:
            run_rounds(run, chaos_rounds, also=lambda: run.api_findings)
        finally:
            run.close()
            chaos_report.append(run.tally.row())
    assert not run.api_findings, run.api_findings  # close() adds tracebacks, exit codes
    assert run.tally.kills >= 2 * chaos_rounds
    assert run.tally.requests == 3 * chaos_rounds  # every create was acknowledged
    assert run.tally.faults > 0  # the proxy did fail calls

