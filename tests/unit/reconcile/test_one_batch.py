"""A pass whose requests form one batch runs it in the pass's own thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from talprov.providers.protocol import Runtime, Step, StepContext
from talprov.providers.types import Machine, MachineRequest, Owner, Stage, StepResult
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock, ProviderDouble


class Noting(ProviderDouble):
    """One batched step that notes the thread each batch ran in."""

    type_name: ClassVar[str] = "noting"

    def __init__(self) -> None:
        self.name = "noting"
        self.batch_threads: list[int] = []

    def steps(self) -> Sequence[Step]:
        def batch(ctxs: Sequence[StepContext[Any, Any]]) -> list[StepResult]:
            self.batch_threads.append(threading.get_ident())
            return [None] * len(ctxs)

        return (Step.batched("make", batch),)

    def list_machines(self, owner: Owner) -> list[Machine]:
        return []


def test_one_batch_runs_in_the_passs_thread_and_provisions(tmp_path: Path) -> None:
    # A pool (and its thread start) for a single batch was pure cost: on a busy
    # host several milliseconds between the early steps and the server creates.
    clock = FakeClock()
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    provider = Noting()
    try:
        for i in range(3):
            store.create_request(MachineRequest(id=f"one-{i}", provider="noting",
                                                talos_version="v1.13.9"))
        runtime = Runtime(installation="inst", cache_dir=tmp_path, clock=clock,
                          sleep=clock.sleep)
        with Reconciler(store, {"noting": ProviderHandle(provider, 4)}, runtime) as rec:
            report = rec.run_pass()
        assert report.worked == 3
        assert provider.batch_threads == [threading.get_ident()]
        assert {r.stage for r in store.list_requests()} == {Stage.PROVISIONED}
    finally:
        store.close()
