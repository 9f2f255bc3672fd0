"""Benchmark: one converged reconcile pass over N provisioned requests.

Run: ``.venv/bin/python bench/reconcile_pass.py [--requests 5000] [--repeat 5]``.

Every pass looks at every active request (is its machine still there, is it due
yet). The baseline, in the same run on the same store, is what a pass used to
read for that: every active request as a whole record
(``Store.list_requests``), which parses each body and unseals each machine
config. talprov's pass reads payload-free summaries instead and whole records
only of the requests it works on. Machine configs are sealed with a store key
(``TALPROV_STORE_KEY``), as in production. Printed: median wall seconds of each,
this process's CPU seconds (``time.process_time``) and CPU per request, and the
baseline/pass ratios (above 1: the pass is cheaper than the reads it replaced).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402

from talprov.providers.protocol import Runtime, Step  # noqa: E402
from talprov.providers.types import (  # noqa: E402
    Machine,
    MachineRequest,
    MachineState,
    Owner,
)
from talprov.reconcile.reconciler import ACTIVE_STAGES, ProviderHandle, Reconciler  # noqa: E402
from talprov.store.store import Store  # noqa: E402
from talprov.testing import ProviderDouble  # noqa: E402

# A worker config of realistic size (the CA keys, certificates and patches of a
# generated config make it some 10-20 KiB).
CONFIG = "version: v1alpha1\nmachine:\n  type: worker\n  token: bench\n" + "# pad\n" * 2000
KEY = "bench-store-key-not-a-secret"


class Listed(ProviderDouble):
    """A provider whose every machine is running: the pass has nothing to do."""

    type_name: ClassVar[str] = "listed"

    def __init__(self, ids: Sequence[str]) -> None:
        self.name = "listed"
        self.machines = [
            Machine(infra_id=f"m-{rid}", state=MachineState.RUNNING, request_id=rid,
                    machine_uuid=f"uuid-{rid}", addresses=("10.0.0.1",))
            for rid in ids
        ]

    def steps(self) -> Sequence[Step]:
        return (Step("done", lambda ctx: None),)

    def list_machines(self, owner: Owner) -> list[Machine]:
        return list(self.machines)


@dataclass(frozen=True)
class Timing:
    """Medians over the repeats: wall seconds and this process's CPU seconds."""

    wall: float
    cpu: float


def median_timing(call: Callable[[], object], repeat: int) -> Timing:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(statistics.median(walls), statistics.median(cpus))


def show(label: str, timing: Timing, requests: int) -> None:
    per_request = timing.cpu / requests * 1e6
    print(f"  {label:44} {timing.wall:8.3f} s wall  {timing.cpu:8.3f} s CPU  "
          f"{per_request:7.1f} us CPU/request")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    ids = [f"r-{n:05d}" for n in range(args.requests)]
    with tempfile.TemporaryDirectory(prefix="talprov-bench-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'state.db'}", key=KEY)
        store.migrate()
        provider = Listed(ids)
        reconciler = Reconciler(store, {"listed": ProviderHandle(provider)},
                                Runtime(installation="bench", cache_dir=Path(tmp)))
        print(f"recording {args.requests} requests ...", flush=True)
        for rid in ids:
            store.create_request(MachineRequest(id=rid, provider="listed",
                                                talos_version="v1.13.9",
                                                machine_config=SecretStr(CONFIG)))
        # Provision them all (one step each), then record what the listing shows.
        reconciler.run_pass()
        reconciler.run_pass()
        assert all(s.stage.value == "provisioned" for s in store.summaries(ACTIVE_STAGES))

        baseline = median_timing(lambda: store.list_requests(stages=ACTIVE_STAGES),
                                 args.repeat)
        converged = median_timing(reconciler.run_pass, args.repeat)
        reconciler.close()
        store.close()
    print(f"{args.requests} provisioned requests, config {len(CONFIG) // 1024} KiB, sealed")
    show("baseline: read every active request whole", baseline, args.requests)
    show("talprov:  one converged reconcile pass", converged, args.requests)
    print(f"  baseline/pass: {baseline.wall / converged.wall:.1f}x wall, "
          f"{baseline.cpu / max(converged.cpu, 1e-9):.1f}x CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
