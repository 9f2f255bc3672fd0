"""Platforms whose checks read the backend once per round, and leftovers no request owns.

:class:`ObservedPlatform` adds to :class:`~tests.chaos.rounds.Platform`:

- ``refresh``: reads the backend once before a round's checks (``resources_of``
  then answers from that reading, so a round with many requests costs one
  listing, not one per request);
- ``leftovers``: what the platform holds that no live machine owns, counted as
  a whole (a Proxmox disk whose VM is gone, a VMDK no VM references): such a
  part has lost the mark that would name its request, so it cannot be
  attributed to one.

:class:`ObservedChaosRun` runs the rounds of :class:`~tests.chaos.rounds.ChaosRun`
and adds the leftovers to the round's leaks. :func:`run_rounds` is one
platform's whole test.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.conftest import CI_ROUNDS
from tests.chaos.rounds import ChaosRun, Platform


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers inherit the environment: no proxy settings may send them elsewhere
    (autouse in every module that imports it)."""
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)


def rounds_timeout(per_round: float) -> pytest.MarkDecorator:
    """pytest-timeout's limit for a platform's test: ``per_round`` seconds for each of
    the run's rounds (``TALPROV_CHAOS_ROUNDS``), so the long mode is not cut short."""
    rounds = int(os.environ.get("TALPROV_CHAOS_ROUNDS", str(CI_ROUNDS)))
    return pytest.mark.timeout(60 + per_round * rounds)


def _nothing() -> None:
    return None


def _no_leftovers() -> dict[str, int]:
    return {}


@dataclass
class ObservedPlatform(Platform):
    refresh: Callable[[], None] = field(default=_nothing)
    leftovers: Callable[[], dict[str, int]] = field(default=_no_leftovers)


class ObservedChaosRun(ChaosRun):
    """A :class:`ChaosRun` whose checks also count the platform's ownerless leftovers."""

    def check(self, index: int) -> None:
        platform = self.platform
        if isinstance(platform, ObservedPlatform):
            platform.refresh()
        stuck = self.tally.stuck
        super().check(index)
        if self.tally.stuck > stuck:  # what the unsettled requests did last, to diagnose
            for record in self.store.list_requests():
                if not record.stage.settled:
                    events = [e.message[:160] for e in self.store.events(record.request.id)]
                    self.tally.findings.append(f"round {index}: {record.request.id} "
                                               f"last events: {events[-4:]}")
        if isinstance(platform, ObservedPlatform):
            left = {kind: n for kind, n in platform.leftovers().items() if n}
            if left:
                self.tally.leaks += sum(left.values())
                self.tally.findings.append(f"round {index}: parts no machine owns: {left}")


def run_rounds(platform_cm: AbstractContextManager[Platform], workdir: Path, seed: int,
               rounds: int, factory_url: str, report: list[dict[str, Any]],
               settle_seconds: float = 180.0) -> None:
    """``rounds`` rounds on one platform; fails at the first round that finds anything.

    ``settle_seconds`` bounds each wait for convergence and for deletion: BMC and
    vCenter errors are retried after 5 to 10 s with a doubling backoff, so a few
    faults in a row, on a loaded machine, outlast rounds.py's 90 s.
    """
    with platform_cm as platform:
        run = ObservedChaosRun(platform, workdir, seed, factory_url,
                               settle_seconds=settle_seconds)
        try:
            for index in range(rounds):
                run.round(index)
                tally = run.tally
                assert (tally.duplicates, tally.leaks, tally.stuck, tally.lost) == (
                    0, 0, 0, 0), (f"{platform.name}, seed {seed}, round {index}",
                                  tally.findings)
        finally:
            report.append(run.tally.row())
            run.close()
    assert run.tally.kills >= rounds
    assert run.tally.faults > 0  # the proxy did fail calls
