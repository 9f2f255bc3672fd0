"""An interrupted pass (Ctrl-C, SIGTERM, a --wait's deadline) ends at once, even
while a cloud call it started in another thread never returns (an endpoint that
accepts and never answers: the pass used to wait out the HTTP read timeout, ten
minutes). A request whose step is left running keeps its lease, and nothing is
stored for it after the stop; the others' leases are given back as before.

The interruption is ``abandon_after``'s SIGALRM (the --wait deadline's path; a
signal's KeyboardInterrupt unwinds the same way). A guard lets the blocked calls
go after :data:`GUARD` seconds, so that a pass that waits for them fails these
tests instead of hanging the suite.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from talprov.processes import abandon_after
from talprov.providers.batching import one_by_one
from talprov.providers.protocol import Runtime, Step, StepContext
from talprov.providers.types import Machine, MachineRequest, Owner, Retry, StepResult
from talprov.reconcile.reconciler import PassReport, ProviderHandle, Reconciler
from talprov.store.errors import StoreError
from talprov.store.store import Store
from talprov.testing import FakeClock, ProviderDouble
from tests.helpers import WORKER_CONFIG

#: Seconds after which the guard lets blocked calls return (a pass that waited
#: for them then ends, late).
GUARD = 8.0
#: How long an interrupted pass may take to end.
PROMPTLY = 3.0
#: How long a pass may take to get stuck (well below GUARD).
STUCK_WITHIN = 5.0


class Stuck(ProviderDouble):
    """A provider whose listing, or whose step for some requests, blocks until
    ``release`` is set (the test never sets it; the guard does, late)."""

    type_name: ClassVar[str] = "stuck"

    def __init__(self, *, listing_blocks: bool = False, blocking: Sequence[str] = (),
                 batched: bool = False) -> None:
        self.name = "stuck"
        self.listing_blocks = listing_blocks
        self.blocking = set(blocking)
        self.batched = batched
        self.release = threading.Event()
        #: Set once a blocking call has begun (the moment to interrupt).
        self.blocked = threading.Event()
        #: The requests whose call returned.
        self.answered: set[str] = set()

    def steps(self) -> Sequence[Step]:
        return (Step("create", self._create,
                     run_batch=one_by_one(self._create) if self.batched else None),)

    def _create(self, ctx: StepContext[Any, Any]) -> StepResult:
        if ctx.request.id in self.blocking:
            self.blocked.set()
            self.release.wait()
        ctx.state.infra_id = f"m-{ctx.request.id}"
        self.answered.add(ctx.request.id)
        return Retry(after=30.0, reason="booting")

    def list_machines(self, owner: Owner) -> list[Machine]:
        if self.listing_blocks:
            self.blocked.set()
            self.release.wait()
        return []


@pytest.fixture
def guarded() -> Iterator[list[Stuck]]:
    """Providers registered here are released after GUARD seconds, and at the end."""
    providers: list[Stuck] = []

    def release_all() -> None:
        for provider in providers:
            provider.release.set()

    timer = threading.Timer(GUARD, release_all)
    timer.daemon = True
    timer.start()
    yield providers
    timer.cancel()
    release_all()


def reconciler(store: Store, provider: Stuck, tmp_path: Path) -> Reconciler:
    clock = FakeClock()
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    return Reconciler(store, {"stuck": ProviderHandle(provider, concurrency=4)}, runtime,
                      worker_id="host:1")


def create(store: Store, *ids: str) -> None:
    for rid in ids:
        store.create_request(MachineRequest(id=rid, provider="stuck", talos_version="v1.13.9",
                                            machine_config=SecretStr(WORKER_CONFIG)))


def interrupted_pass(worker: Reconciler, provider: Stuck, *, held: set[str],
                     in_step: set[str], answered: Collection[str] = ()) -> float:
    """Run a pass, broken off once it is stuck: a call of ``provider`` blocks,
    the worker holds the leases of ``held`` (its claim is over), the requests in
    a step are exactly ``in_step`` and those of ``answered`` had their answer;
    seconds from the interruption to the pass's end.

    Broken off by abandon_after's own alarm, armed anew for now: a fixed deadline
    (half a second, once) came before the pass got there on a loaded machine.
    """
    interrupted: list[float] = []

    def interrupt_once_stuck() -> None:
        deadline = time.monotonic() + STUCK_WITHIN
        while time.monotonic() < deadline:
            with worker._gate._lock:
                stepping = set(worker._gate._in_step)
            if (provider.blocked.is_set() and worker.held_leases() == held
                    and stepping == in_step and set(answered) <= provider.answered):
                interrupted.append(time.monotonic())
                # The pass cannot end before the guard lets the call go (GUARD,
                # later than STUCK_WITHIN): the alarm finds abandon_after waiting.
                signal.setitimer(signal.ITIMER_REAL, 0.001)
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=interrupt_once_stuck, daemon=True)
    watcher.start()
    ended: PassReport | None = abandon_after(STUCK_WITHIN + 1, worker.run_pass, otherwise=None)
    done = time.monotonic()
    watcher.join(10)
    assert provider.blocked.is_set(), "nothing blocked: the test tests nothing"
    assert interrupted, f"the pass never got stuck with {sorted(in_step)} in a step"
    assert ended is None, "the pass ended before the interruption"
    return done - interrupted[0]


def holder(store: Store, rid: str) -> str | None:
    found = store.lease_holder(rid)
    return None if found is None else found[0]


def test_a_listing_that_never_answers_does_not_hold_the_stop(
        store: Store, tmp_path: Path, guarded: list[Stuck]) -> None:
    provider = Stuck(listing_blocks=True)
    guarded.append(provider)
    create(store, "r-1")
    with reconciler(store, provider, tmp_path) as worker:
        took = interrupted_pass(worker, provider, held={"r-1"}, in_step=set())
    assert took < PROMPTLY, f"the stop waited {took:.1f}s for the listing"
    # No step ran for it: its lease is given back, as on any interruption.
    assert holder(store, "r-1") is None


def test_a_step_that_never_returns_keeps_its_lease_and_stores_nothing_after_the_stop(
        store: Store, tmp_path: Path, guarded: list[Stuck]) -> None:
    provider = Stuck(blocking=["r-1"])
    guarded.append(provider)
    create(store, "r-1", "r-2")
    before = store.get_request("r-1")
    assert before is not None
    with reconciler(store, provider, tmp_path) as worker:
        took = interrupted_pass(worker, provider, held={"r-1", "r-2"}, in_step={"r-1"},
                                answered={"r-2"})
        assert took < PROMPTLY, f"the stop waited {took:.1f}s for the step"
        # r-1's step may still write to the cloud: nobody else may start it
        # (a later process of this host takes it over once this one is gone).
        assert holder(store, "r-1") == "host:1"
        assert holder(store, "r-2") is None  # its step had ended
        assert "r-1" not in worker.held_leases()  # held, no longer renewed
        # The abandoned step returns after all: what it did is not stored.
        provider.release.set()
        deadline = time.monotonic() + 5
        while any(t.name.startswith("talprov-steps") for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the left step's thread never ended"
            time.sleep(0.02)
    after = store.get_request("r-1")
    assert after is not None
    assert after.version == before.version
    assert holder(store, "r-1") == "host:1"


def test_a_batch_step_whose_call_never_returns_keeps_the_batch_leased(
        store: Store, tmp_path: Path, guarded: list[Stuck]) -> None:
    # One batch: the step runs in the pass's own thread, its calls side by side in
    # threads of the batch's (one_by_one); the interruption leaves those.
    provider = Stuck(blocking=["r-1"], batched=True)
    guarded.append(provider)
    create(store, "r-1", "r-2")
    with reconciler(store, provider, tmp_path) as worker:
        took = interrupted_pass(worker, provider, held={"r-1", "r-2"}, in_step={"r-1", "r-2"})
    assert took < PROMPTLY, f"the stop waited {took:.1f}s for the batch"
    # The batch's outcome is one write that never came: both stay leased.
    assert holder(store, "r-1") == "host:1"
    assert holder(store, "r-2") == "host:1"


def test_a_step_the_interruption_broke_off_itself_gives_its_lease_back(
        store: Store, tmp_path: Path, guarded: list[Stuck]) -> None:
    # The step ran in the pass's own thread and the interruption was raised in
    # it: nothing of it runs any more, so its lease is given back as before.
    provider = Stuck(blocking=["r-1"])
    guarded.append(provider)
    create(store, "r-1")
    with reconciler(store, provider, tmp_path) as worker:
        took = interrupted_pass(worker, provider, held={"r-1"}, in_step={"r-1"})
    assert took < PROMPTLY
    assert holder(store, "r-1") is None


class ClaimThenInterrupted(Store):
    """A store whose lease claims commit, and then the interruption comes: a
    signal handled in the main thread right after the claim's transaction."""

    def claim_many(self, request_ids: Collection[str], **kwargs: Any) -> dict[str, int]:
        super().claim_many(request_ids, **kwargs)
        raise KeyboardInterrupt


def test_an_interruption_right_after_the_claim_gives_its_leases_back(
        tmp_path: Path, guarded: list[Stuck]) -> None:
    # The listing goes beside the claim, so an interruption while it blocks may
    # come inside the claim: the leases it had just committed were kept (until
    # the TTL, for another host), the release covering the claimed ones only.
    store = ClaimThenInterrupted(f"sqlite:///{tmp_path / 'claimed.db'}")
    store.migrate()
    provider = Stuck()
    guarded.append(provider)
    create(store, "r-1", "r-2")
    with reconciler(store, provider, tmp_path) as worker, pytest.raises(KeyboardInterrupt):
        worker.run_pass()
    assert holder(store, "r-1") is None
    assert holder(store, "r-2") is None
    store.close()


class ClaimThenFailing(Store):
    """A store whose lease claims commit, and then the claim's answer is lost (a
    connection dropped after COMMIT): the pass sees a StoreError."""

    def claim_many(self, request_ids: Collection[str], **kwargs: Any) -> dict[str, int]:
        super().claim_many(request_ids, **kwargs)
        raise StoreError("store: connection lost after the commit")


def test_a_claim_that_fails_after_its_commit_gives_its_leases_back(
        tmp_path: Path, guarded: list[Stuck]) -> None:
    # Review: only an interruption gave back the leases of a claim that did not
    # return; a store error kept them (renewed by this worker) until a later pass.
    store = ClaimThenFailing(f"sqlite:///{tmp_path / 'failed.db'}")
    store.migrate()
    provider = Stuck()
    guarded.append(provider)
    create(store, "r-1", "r-2")
    with reconciler(store, provider, tmp_path) as worker:
        with pytest.raises(StoreError):
            worker.run_pass()
        assert worker.held_leases() == set()
    assert holder(store, "r-1") is None
    assert holder(store, "r-2") is None
    store.close()
