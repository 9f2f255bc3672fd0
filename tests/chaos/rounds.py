"""Chaos rounds against one platform: kills and faults, convergence, deletion, checks.

A round, all of it with the fault proxy failing ``FAULT_RATE`` of the calls:

1. a few new requests are recorded;
2. one or two ``talprov reconcile`` workers are started and SIGKILLed at a
   random moment each;
3. a worker runs until every live request has settled (provisioned or failed);
4. about half of the live requests are deleted and a worker runs until they are
   gone;
5. with faults off, the platform and the store are checked: exactly one machine
   per live provisioned request (no more for a failed one), nothing left of a
   deleted request, no request unsettled or failed without an error, and no
   request missing from the store.

Everything random comes from ``random.Random`` seeded with the run's seed, the
platform and the round, so a seed replays the same kills and the same fault
sequence (thread scheduling aside: the order in which concurrent calls reach the
proxy is the operating system's).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from talprov.providers.types import MachineRequest, Stage
from talprov.store.store import Store
from tests.chaos.proxy import FaultProxy
from tests.killing import kill, run_then_kill, start_worker, worker_env

FAULT_RATE = 0.2
REQUESTS_PER_ROUND = 3
CONFIG = "version: v1alpha1\nmachine: {type: worker}\n"


@dataclass
class Platform:
    """One emulated platform behind a fault proxy."""

    name: str
    proxy: FaultProxy
    #: ``providers.chaos`` of talprov.yaml, pointing at the proxy.
    provider_block: dict[str, Any]
    provider_data: dict[str, Any]
    #: What the platform holds for a request id, by kind ("machines", "ports", ...),
    #: read from the backend directly (not through the proxy).
    resources_of: Callable[[str], dict[str, int]]
    talos_version: str = "v1.11.5"


@dataclass
class Tally:
    """What a platform's rounds did and found; the last four must stay 0."""

    platform: str
    seed: int
    rounds: int = 0
    kills: int = 0
    faults: int = 0
    requests: int = 0
    duplicates: int = 0
    leaks: int = 0
    stuck: int = 0
    lost: int = 0
    findings: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "findings"} | {
            "findings": self.findings[:20]}


@dataclass
class ChaosRun:
    platform: Platform
    workdir: Path
    seed: int
    factory_url: str
    settle_seconds: float = 90.0
    created: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tally = Tally(self.platform.name, self.seed)
        store_url = f"sqlite:///{self.workdir / 'chaos.db'}"
        config = self.workdir / "talprov.yaml"
        config.write_text(yaml.safe_dump({
            "store": store_url, "installation": f"chaos-{self.seed}",
            "cache_dir": str(self.workdir / "cache"),
            "image_factory": {"url": self.factory_url},
            "providers": {"chaos": self.platform.provider_block},
        }))
        self.env = worker_env(config)
        self.store = Store(store_url)
        self.store.migrate()

    def close(self) -> None:
        self.store.close()

    # -- one round ------------------------------------------------------------------------

    def round(self, index: int) -> None:
        rng = random.Random(f"{self.seed}:{self.platform.name}:{index}")
        proxy = self.platform.proxy
        before = sum(proxy.injected.values())
        for n in range(REQUESTS_PER_ROUND):
            self._create(f"r{index}-{n}")
        proxy.rate = FAULT_RATE
        try:
            for _ in range(rng.randint(1, 2)):
                run_then_kill(self.env, rng.uniform(0.8, 3.0))
                self.tally.kills += 1
            self._run_until(lambda: all(r.stage.settled for r in self._live()))
            live = sorted(r.request.id for r in self._live())
            doomed = rng.sample(live, k=max(1, len(live) // 2)) if live else []
            for request_id in doomed:
                self.store.request_deletion(request_id)
            self._run_until(lambda: all(self._stage(i) == Stage.GONE for i in doomed))
        finally:
            proxy.rate = 0.0
        self.tally.rounds += 1
        self.tally.faults += sum(proxy.injected.values()) - before
        self.check(index)

    def _create(self, request_id: str) -> None:
        self.store.create_request(MachineRequest(
            id=request_id, provider="chaos", talos_version=self.platform.talos_version,
            machine_config=SecretStr(CONFIG), labels={"chaos": "yes"},
            provider_data=dict(self.platform.provider_data)))
        self.created.append(request_id)
        self.tally.requests += 1

    def _live(self) -> list[Any]:
        return [r for r in self.store.list_requests() if r.stage != Stage.DEPROVISIONING]

    def _stage(self, request_id: str) -> Stage | None:
        record = self.store.get_request(request_id)
        return None if record is None else record.stage

    def _run_until(self, done: Callable[[], bool]) -> None:
        """One worker, under faults, until ``done()`` or the settle deadline."""
        worker = start_worker(self.env)
        try:
            deadline = time.monotonic() + self.settle_seconds
            while not done() and time.monotonic() < deadline:
                time.sleep(0.3)
        finally:
            kill(worker)

    # -- the checks -----------------------------------------------------------------------

    def check(self, index: int) -> None:
        """Count duplicates, leaks, unsettled requests and lost records (faults off)."""
        records = {r.request.id: r for r in self.store.list_requests(include_gone=True)}
        tally = self.tally
        for request_id in self.created:
            record = records.get(request_id)
            if record is None:
                tally.lost += 1
                tally.findings.append(f"round {index}: {request_id} lost from the store")
                continue
            held = self.platform.resources_of(request_id)
            if record.stage == Stage.GONE:
                left = sum(held.values())
                if left:
                    tally.leaks += left
                    tally.findings.append(f"round {index}: deleted {request_id} left {held}")
                continue
            machines = held.get("machines", 0)
            if machines > 1:
                tally.duplicates += machines - 1
                tally.findings.append(f"round {index}: {request_id} has {machines} machines")
            settled_ok = (record.stage == Stage.PROVISIONED and machines == 1) or (
                record.stage == Stage.FAILED and bool(record.error))
            if not settled_ok:
                tally.stuck += 1
                tally.findings.append(f"round {index}: {request_id} {record.stage} "
                                      f"({machines} machines, error {record.error!r})")


def run_rounds(run: ChaosRun, rounds: int, also: Callable[[], list[str]] = list) -> None:
    """``rounds`` rounds of ``run``; after each, fail naming the seed and round when
    a duplicate, leak, unsettled request or lost record was found, or when
    ``also()`` returns findings of its own."""
    for index in range(rounds):
        run.round(index)
        tally = run.tally
        assert (tally.duplicates, tally.leaks, tally.stuck, tally.lost) == (0, 0, 0, 0), (
            f"seed {run.seed}, round {index}", tally.findings)
        assert not also(), (f"seed {run.seed}, round {index}", also())
