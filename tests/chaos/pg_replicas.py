"""Chaos rounds with two ``talprov serve`` replicas sharing one PostgreSQL store.

The platform is AWS (moto behind the fault proxy, see platforms.py). Unlike the
worker rounds of rounds.py, the replicas run all the time and every create and
delete goes through their HTTP API, to a replica chosen at random (the other
one when the first is down or answers 503, sending the same id again). A round,
with the proxy failing ``FAULT_RATE`` of the cloud calls:

1. a few requests are created through the API;
2. at a random moment one replica is SIGKILLed (the one holding more leases,
   so that it dies mid-step; a random one on a tie) and started again in the
   background (a new process, a new ``host:pid`` worker id), the other one
   serving alone until it is up;
3. both replicas work until every live request has settled;
4. about half of the live requests are deleted through the API, and again a
   replica is SIGKILLed and restarted while they are deprovisioned;
5. with faults off, :meth:`ChaosRun.check` counts duplicates, leaks, unsettled
   requests and lost records, exactly as for the worker rounds.

Any API answer other than 200/201/202/404 and 503 (a 500, a 4xx) is a finding,
as is a traceback in a replica's output.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import yaml

from talprov.providers.types import Stage
from talprov.store.store import Store
from tests.chaos.replicas import NAMES, STORE_AWAY, Replicas, wait_for
from tests.chaos.rounds import CONFIG, FAULT_RATE, REQUESTS_PER_ROUND, ChaosRun, Tally
from tests.killing import worker_env
from tests.unit.service.conftest import WRITE, WRITE_TOKEN

PLATFORM = "pg-replicas"
#: How long a client keeps trying one call (both replicas, 503s, a restart).
CALL_SECONDS = 60.0


@dataclass
class ReplicaTally(Tally):
    """Tally's counts, and how many kills hit a replica holding leases (mid-step)."""

    kills_holding_leases: int = 0


@dataclass
class ReplicaChaosRun(ChaosRun):
    """ChaosRun's checks over two replicas on ``store_url`` (a PostgreSQL URL)."""

    store_url: str = ""
    #: Answers that must not happen (a 500, an unexpected 4xx), with the call.
    api_findings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tally: ReplicaTally = ReplicaTally(PLATFORM, self.seed)
        config = self.workdir / "talprov.yaml"
        config.write_text(yaml.safe_dump({
            "store": self.store_url, "installation": f"chaos-{self.seed}",
            "cache_dir": str(self.workdir / "cache"),
            "image_factory": {"url": self.factory_url},
            "providers": {"chaos": self.platform.provider_block},
            "service": {"tokens": [{"name": "chaos", "value": WRITE_TOKEN,
                                    "providers": ["*"], "access": "write"}],
                        "reconcile_interval": 0.2, "lease_ttl": 3},
        }))
        self.env = worker_env(config)
        self.store = Store(self.store_url)
        self.store.migrate()
        self.replicas = Replicas(self.env, self.workdir, named=False)

    def close(self) -> None:
        codes = self.replicas.close()
        for text in self.replicas.tracebacks():
            self.api_findings.append(f"traceback in a replica's output: {text[-1500:]}")
        if any(codes):
            self.api_findings.append(f"replicas exited {codes} on SIGTERM")
        super().close()

    # -- one round ------------------------------------------------------------------------

    def round(self, index: int) -> None:
        rng = random.Random(f"{self.seed}:{PLATFORM}:{index}")
        proxy = self.platform.proxy
        before = sum(proxy.injected.values())
        proxy.rate = FAULT_RATE
        try:
            for n in range(REQUESTS_PER_ROUND):
                self._create_via(rng.choice(NAMES), f"r{index}-{n}")
            self._kill_one(rng, rng.uniform(0.1, 1.5))
            self._wait(lambda: all(r.stage.settled for r in self._live()))
            live = sorted(r.request.id for r in self._live())
            doomed = rng.sample(live, k=max(1, len(live) // 2)) if live else []
            for request_id in doomed:
                self._delete_via(rng.choice(NAMES), request_id)
            self._kill_one(rng, rng.uniform(0.0, 1.0))
            self._wait(lambda: all(self._stage(i) == Stage.GONE for i in doomed))
        finally:
            proxy.rate = 0.0
            self.replicas.started()
        self.tally.rounds += 1
        self.tally.faults += sum(proxy.injected.values()) - before
        self.check(index)

    def _kill_one(self, rng: random.Random, after: float) -> None:
        """SIGKILL a replica ``after`` seconds from now: the one holding more of the
        round's leases (mid-step, then), the random pick on a tie. It restarts in the
        background, so the other one serves alone meanwhile."""
        time.sleep(after)
        self.replicas.started()
        pick = rng.choice(NAMES)
        held = {name: self._leases_of(name) for name in NAMES}
        victim = max(NAMES, key=lambda name: (held[name], name == pick))
        if held[victim]:
            self.tally.kills_holding_leases += 1
        self.replicas.restart(victim, wait=False)
        self.tally.kills += 1

    def _leases_of(self, name: str) -> int:
        """How many requests the replica's worker (``host:pid``) holds a lease on."""
        suffix = f":{self.replicas.servers[name].process.pid}"
        return sum((self.store.lease_holder(i) or ("",))[0].endswith(suffix)
                   for i in self.created)

    def _wait(self, done: Callable[[], bool]) -> None:
        """Until ``done()`` or the settle deadline; check() reports what is left."""
        wait_for(done, self.settle_seconds)

    # -- the API, as a client that fails over ---------------------------------------------

    def _create_via(self, first: str, request_id: str) -> None:
        body = {"id": request_id, "provider": "chaos",
                "talos_version": self.platform.talos_version, "config": CONFIG,
                "labels": {"chaos": "yes"}, "provider_data": dict(self.platform.provider_data)}
        if self._call(first, "POST", "/v1/machine-requests", body, (200, 201)):
            self.created.append(request_id)
            self.tally.requests += 1

    def _delete_via(self, first: str, request_id: str) -> None:
        self._call(first, "DELETE", f"/v1/machine-requests/{request_id}", None, (202, 404))

    def _call(self, first: str, method: str, path: str, body: dict[str, Any] | None,
              wanted: tuple[int, ...]) -> bool:
        """Send the call to ``first``, then alternate, until a wanted answer; a 503
        or a broken connection is tried again. Whether a wanted answer came."""
        order = [first, *(n for n in NAMES if n != first)]
        deadline = time.monotonic() + CALL_SECONDS
        attempt = 0
        while time.monotonic() < deadline:
            name = order[attempt % 2]
            attempt += 1
            try:
                status = self.replicas.clients[name].request(
                    method, path, json=body, headers=WRITE).status_code
            except (httpx.TransportError, KeyError):
                status = 0  # killed under the call, or being restarted
            if status in wanted:
                return True
            if status not in (0, STORE_AWAY):
                self.api_findings.append(f"{method} {path} via {name}: {status}")
                return False
            time.sleep(0.2)
        self.api_findings.append(f"{method} {path}: no answer in {CALL_SECONDS:.0f} s")
        return False
