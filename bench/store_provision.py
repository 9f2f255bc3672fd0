"""Benchmark: store time per request while N requests provision through the reconciler.

Run: ``.venv/bin/python bench/store_provision.py [--requests 3000] [--repeat 3]``.

A provider double makes machines instantly, in three steps (as AWS's resolve,
ensure, wait): once with ``run_batch`` on every step (a batch step's results
are written together) and once without (every request its own step calls,
spread over 8 worker threads, as drivers without batch steps do). Everything
else is talprov's real reconciler and SQLite store. Measured with the real
clock: the wall time until all are provisioned, the time spent inside store
calls (summed over threads) per request, wall and CPU (the wall time also
counts waits for a core that other programs hold, the CPU time does not), and
the number of commits. Goal of issue 16: at most 2 ms of store time per
request. min/median of ``--repeat``. The load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from talprov.providers.protocol import Runtime, Step, StepContext  # noqa: E402
from talprov.providers.types import Machine, MachineRequest, Owner, Stage, StepResult  # noqa: E402
from talprov.reconcile.reconciler import ProviderHandle, Reconciler  # noqa: E402
from talprov.store.store import Store  # noqa: E402
from talprov.testing import ProviderDouble  # noqa: E402

CONFIG = "version: v1alpha1\nmachine:\n  type: worker\n  token: bench\n" + "# pad\n" * 500


class Instant(ProviderDouble):
    """Three steps that finish at once; ``batched`` decides whether they batch."""

    type_name: ClassVar[str] = "instant"

    def __init__(self, batched: bool) -> None:
        self.name = "instant"
        self.batched = batched

    @staticmethod
    def _step(ctx: StepContext[Any, Any]) -> StepResult:
        ctx.state.infra_id = f"vm-{ctx.request.id}"
        return None

    def _many(self, ctxs: Sequence[StepContext[Any, Any]]) -> list[StepResult]:
        return [self._step(ctx) for ctx in ctxs]

    def steps(self) -> Sequence[Step]:
        batch = self._many if self.batched else None
        return tuple(Step(name, self._step, batch) for name in ("one", "two", "three"))

    def list_machines(self, owner: Owner) -> list[Machine]:
        return []


class StoreTimer:
    """Wraps every public method of a store to sum the seconds spent inside: wall
    time, and the calling threads' CPU time (which, unlike the wall time, does
    not grow when other programs take the machine's cores)."""

    def __init__(self, store: Store) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self._lock = threading.Lock()
        self._depth = threading.local()
        for name in dir(store):
            attr = getattr(store, name)
            if not name.startswith("_") and callable(attr):
                setattr(store, name, self._timed(attr))

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            # Only the outermost call counts: store methods call each other.
            depth = getattr(self._depth, "n", 0)
            self._depth.n = depth + 1
            start, cpu_start = time.perf_counter(), time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                self._depth.n = depth
                if depth == 0:
                    with self._lock:
                        self.seconds += time.perf_counter() - start
                        self.cpu_seconds += time.thread_time() - cpu_start
        return timed


def run(requests: int, batched: bool, work: Path) -> tuple[float, float, int, float]:
    """(wall seconds, store seconds, commits, store CPU seconds) for one
    provisioning of ``requests``."""
    store = Store(f"sqlite:///{work / 'state.db'}")
    store.migrate()
    for n in range(requests):
        store.create_request(MachineRequest(id=f"r-{n:05d}", provider="instant",
                                            talos_version="v1.11.5",
                                            machine_config=SecretStr(CONFIG)))
    commits = [0]
    sa.event.listen(store._engine, "commit", lambda _c: commits.__setitem__(0, commits[0] + 1))
    timer = StoreTimer(store)
    reconciler = Reconciler(store, {"instant": ProviderHandle(Instant(batched), 8)},
                            Runtime(installation="bench", cache_dir=work))
    start = time.perf_counter()
    reconciler.run_pass()
    wall = time.perf_counter() - start
    assert all(s.stage == Stage.PROVISIONED for s in store.summaries([Stage.PROVISIONED,
                                                                     Stage.PROVISIONING,
                                                                     Stage.PENDING]))
    reconciler.close()
    store.close()
    return wall, timer.seconds, commits[0], timer.cpu_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{args.requests} requests, 3 instant steps, SQLite file, real clock; "
          f"min/median of {args.repeat}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    for batched in (True, False):
        results = []
        for _attempt in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="talprov-bench-") as tmp:
                results.append(run(args.requests, batched, Path(tmp)))
        walls = [r[0] for r in results]
        per_request = [r[1] / args.requests * 1000 for r in results]
        cpu_per_request = [r[3] / args.requests * 1000 for r in results]
        label = "batch steps" if batched else "single steps"
        print(f"  {label:12}: wall {min(walls):6.2f}/{statistics.median(walls):6.2f} s, "
              f"store {min(per_request):6.2f}/{statistics.median(per_request):6.2f} ms/request "
              f"(CPU {min(cpu_per_request):5.2f}/{statistics.median(cpu_per_request):5.2f}), "
              f"{results[0][2]} commits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
