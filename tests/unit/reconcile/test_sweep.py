"""The reconciler sweeps leftovers of requests the store no longer holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from talprov.providers.errors import AuthError, Transient
from talprov.providers.protocol import (
    Leftover,
    Runtime,
    Step,
    StepContext,
    SweepsLeftovers,
)
from talprov.providers.types import (
    Machine,
    MachineRequest,
    MachineState,
    Owner,
    Retry,
    Stage,
    StepResult,
)
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.secrets import MASK, register_secret
from talprov.service.metrics import Metrics, instrument
from talprov.store.store import Store
from talprov.testing import FakeClock, ProviderDouble
from tests.unit.service.test_metrics_and_forget import samples

SECRET = "sweep-secret-4f9a1c77"
#: Later than any test here moves its FakeClock, so no request becomes due.
IN_AN_HOUR = datetime.fromtimestamp(FakeClock().now, UTC) + timedelta(hours=1)


class PlainProvider(ProviderDouble):
    """A provider double without the optional protocol; records every call made to it.

    Its requests never finish a step, so a pass leaves them as they were put.
    """

    type_name: ClassVar[str] = "leaky"

    def __init__(self, name: str, leftovers: Sequence[Leftover] = ()) -> None:
        self.name = name
        self.leftovers = list(leftovers)
        self.calls: list[tuple[str, Any]] = []

    def steps(self) -> Sequence[Step]:
        return (Step("never-done", lambda ctx: Retry(after=3600, reason="waiting")),)

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        return Retry(after=3600, reason="waiting")

    def list_machines(self, owner: Owner) -> list[Machine]:
        self.calls.append(("list_machines", owner))
        return [Machine(infra_id="m-1", state=MachineState.RUNNING, request_id="held-provisioned")]


class LeakyProvider(PlainProvider):
    """The double with leftovers to sweep."""

    def __init__(self, name: str, leftovers: Sequence[Leftover] = ()) -> None:
        super().__init__(name, leftovers)
        self.list_error: Exception | None = None
        self.delete_errors: dict[str, Exception] = {}
        #: Runs inside list_leftovers, after the listing was taken.
        self.while_listing: Callable[[], None] | None = None

    def list_leftovers(self, owner: Owner) -> list[Leftover]:
        self.calls.append(("list_leftovers", owner))
        if self.list_error is not None:
            raise self.list_error
        listing = list(self.leftovers)
        if self.while_listing is not None:
            self.while_listing()
        return listing

    def delete_leftover(self, owner: Owner, leftover: Leftover) -> None:
        self.calls.append(("delete_leftover", leftover))
        error = self.delete_errors.get(leftover.id)
        if error is not None:
            raise error
        self.leftovers.remove(leftover)

    def deleted(self) -> list[str]:
        return [arg.id for call, arg in self.calls if call == "delete_leftover"]

    def listings(self) -> int:
        return sum(1 for call, _ in self.calls if call == "list_leftovers")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'state.db'}")
    opened.migrate()
    yield opened
    opened.close()


def make_reconciler(store: Store, clock: FakeClock, tmp_path: Path,
                    *providers: PlainProvider, **options: Any) -> Reconciler:
    runtime = Runtime(installation="inst", cache_dir=tmp_path, clock=clock, sleep=clock.sleep)
    handles = {p.name: ProviderHandle(p, concurrency=2) for p in providers}
    return Reconciler(store, handles, runtime, **options)


def put(store: Store, rid: str, stage: Stage, provider: str = "leaky") -> None:
    """A request of ``provider`` in ``stage``, not due for an hour (so no step runs)."""
    record = store.create_request(MachineRequest(id=rid, provider=provider,
                                                 talos_version="v1.13.9"))
    if stage == Stage.DEPROVISIONING:
        record = store.request_deletion(rid)
    store.save_progress(
        rid, expected_version=record.version, stage=stage, step_index=0, step_name=None,
        state={}, error=None, attempts=0, next_attempt_at=IN_AN_HOUR,
        step_started_at=None, infra_id=None, machine_uuid=None, addresses=(), events=(),
    )


def leftover(rid: str | None, kind: str = "port") -> Leftover:
    return Leftover(kind=kind, id=f"{kind}-{rid}", request_id=rid)


def test_the_double_is_seen_as_sweeping_and_the_plain_one_is_not() -> None:
    assert isinstance(LeakyProvider("a"), SweepsLeftovers)
    assert not isinstance(PlainProvider("b"), SweepsLeftovers)


def test_the_services_instrumenting_wrapper_keeps_the_optional_protocol(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    metrics = Metrics()
    leaky = LeakyProvider("leaky", [leftover("never-stored")])
    wrapped = instrument(leaky, "leaky", metrics)
    assert isinstance(wrapped, SweepsLeftovers)
    assert not isinstance(instrument(PlainProvider("plain"), "plain", metrics), SweepsLeftovers)

    reconciler = make_reconciler(store, clock, tmp_path, PlainProvider("unused"))
    reconciler.providers = {"leaky": ProviderHandle(wrapped)}
    assert reconciler.run_pass().swept == 1
    assert leaky.deleted() == ["port-never-stored"]
    swept = samples(metrics.exposition()[0].decode())
    assert swept[("talprov_leftovers_swept_total",
                  frozenset({("provider", "leaky"), ("kind", "port")}))] == 1

    leaky.list_error = Transient("busy", retry_after=1)
    with pytest.raises(Transient):
        wrapped.list_leftovers(Owner("inst", "leaky"))
    errors = samples(metrics.exposition()[0].decode())
    assert errors[("talprov_provider_errors_total", frozenset(
        {("provider", "leaky"), ("operation", "list_leftovers"), ("error", "Transient")}))] == 1


def test_leftovers_of_requests_not_held_are_deleted_the_rest_kept(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    held_stages = {
        "held-pending": Stage.PENDING,
        "held-provisioning": Stage.PROVISIONING,
        "held-provisioned": Stage.PROVISIONED,
        "held-failed": Stage.FAILED,
        "held-deprovisioning": Stage.DEPROVISIONING,
    }
    for rid, stage in held_stages.items():
        put(store, rid, stage)
    put(store, "was-here", Stage.GONE)
    put(store, "other-instance", Stage.PENDING, provider="elsewhere")
    kept = [leftover(rid) for rid in held_stages] + [leftover(None, "floating-ip")]
    doomed = [leftover("never-stored"), leftover("was-here", "floating-ip"),
              leftover("other-instance")]
    provider = LeakyProvider("leaky", [*kept, *doomed])
    reconciler = make_reconciler(store, clock, tmp_path, provider)

    report = reconciler.run_pass()

    assert report.errors == ["provider 'elsewhere' is not configured here"]
    assert report.swept == 3
    assert sorted(provider.deleted()) == sorted(x.id for x in doomed)
    assert provider.leftovers == kept
    assert ("list_leftovers", Owner("inst", "leaky")) in provider.calls


def test_the_sweep_runs_at_most_once_per_interval_and_only_in_full_passes(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    provider = LeakyProvider("leaky", [leftover("gone-1")])
    reconciler = make_reconciler(store, clock, tmp_path, provider, sweep_interval=300.0)
    put(store, "held-1", Stage.PENDING)

    assert reconciler.run_pass(only={"held-1"}).swept == 0  # a targeted pass: no sweep
    assert provider.listings() == 0
    assert reconciler.run_pass().swept == 1  # the first full pass sweeps
    assert provider.listings() == 1
    provider.leftovers.append(leftover("gone-2"))
    clock.sleep(299.0)
    assert reconciler.run_pass().swept == 0
    assert provider.listings() == 1
    clock.sleep(1.0)
    assert reconciler.run_pass().swept == 1
    assert provider.listings() == 2
    assert provider.deleted() == ["port-gone-1", "port-gone-2"]


def test_instances_without_requests_are_swept_and_plain_providers_left_alone(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    idle = LeakyProvider("idle", [leftover("old-1"), leftover("old-2", "volume")])
    plain = PlainProvider("plain", [leftover("old-3")])
    reconciler = make_reconciler(store, clock, tmp_path, idle, plain)

    report = reconciler.run_pass()

    assert report.errors == []
    assert report.list_calls == {}  # no request anywhere: no machine listing
    assert report.swept == 2
    assert idle.leftovers == []
    assert plain.calls == []


def test_failures_are_reported_redacted_and_the_sweep_goes_on(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    register_secret(SECRET)
    broken = LeakyProvider("a-broken")
    broken.list_error = AuthError(f"token {SECRET} refused")
    flaky = LeakyProvider("b-flaky", [leftover("x-1"), leftover("x-2"), leftover("x-3")])
    flaky.delete_errors["port-x-2"] = Transient(f"throttled for {SECRET}")
    buggy = LeakyProvider("c-buggy", [leftover("y-1"), leftover("y-2")])
    buggy.delete_errors["port-y-1"] = KeyError(SECRET)
    reconciler = make_reconciler(store, clock, tmp_path, broken, flaky, buggy)

    report = reconciler.run_pass()

    assert report.errors == [
        f"a-broken: list_leftovers: token {MASK} refused",
        f"b-flaky: delete_leftover port port-x-2: throttled for {MASK}",
        "c-buggy: delete_leftover port port-y-1: unexpected KeyError",
    ]
    assert report.swept == 3
    assert flaky.deleted() == ["port-x-1", "port-x-2", "port-x-3"]
    assert flaky.leftovers == [leftover("x-2")]
    assert buggy.leftovers == [leftover("y-1")]
    assert all(SECRET not in error for error in report.errors)
    # A failed listing waits for the interval like any sweep, then is tried again.
    assert broken.listings() == 1
    clock.sleep(300.0)
    broken.list_error = None
    reconciler.run_pass()
    assert broken.listings() == 2


def test_a_request_stored_while_leftovers_are_listed_keeps_its_parts(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    # The listing sees a port of a create in flight whose request the store has
    # by the time the sweep reads it: the store is read after listing, so the
    # port is kept.
    provider = LeakyProvider("leaky", [leftover("late-1"), leftover("gone-1")])
    provider.while_listing = lambda: put(store, "late-1", Stage.PENDING)
    reconciler = make_reconciler(store, clock, tmp_path, provider)

    report = reconciler.run_pass()

    assert report.swept == 1
    assert provider.deleted() == ["port-gone-1"]
    assert provider.leftovers == [leftover("late-1")]


class BusyProvider(LeakyProvider):
    """The double whose requests are due again one second after every step."""

    def steps(self) -> Sequence[Step]:
        return (Step("again", lambda ctx: Retry(after=1, reason="working")),)


@pytest.fixture
def busy(store: Store, clock: FakeClock, tmp_path: Path) -> tuple[BusyProvider, Reconciler]:
    """A busy instance with one request due at once and a leftover to sweep."""
    provider = BusyProvider("leaky", [leftover("gone-1")])
    reconciler = make_reconciler(store, clock, tmp_path, provider, sweep_interval=300.0)
    store.create_request(MachineRequest(id="busy-1", provider="leaky",
                                        talos_version="v1.13.9"))
    return provider, reconciler


def test_a_pass_that_works_on_an_instances_requests_leaves_its_sweep_to_an_idle_pass(
    store: Store, busy: tuple[BusyProvider, Reconciler]
) -> None:
    # The sweep is upkeep: its round trips must not stand between a request and
    # provisioned (the first pass after a start would otherwise list leftovers
    # before its requests are done).
    provider, reconciler = busy
    report = reconciler.run_pass()
    assert report.worked == 1
    assert report.swept == 0
    assert provider.listings() == 0

    stuck = store.get_request("busy-1")
    assert stuck is not None
    assert stuck.next_attempt_at is not None
    # Not due yet: nothing to work on, so this pass sweeps.
    report = reconciler.run_pass()
    assert report.worked == 0
    assert report.swept == 1
    assert provider.deleted() == ["port-gone-1"]


def test_an_instance_that_is_never_idle_is_swept_once_its_sweep_is_an_interval_overdue(
    clock: FakeClock, busy: tuple[BusyProvider, Reconciler]
) -> None:
    provider, reconciler = busy

    def busy_pass() -> int:
        report = reconciler.run_pass()
        assert report.worked == 1
        clock.sleep(1.0)  # due again for the next pass
        return report.swept

    assert busy_pass() == 0  # due at once, but busy: put off
    clock.sleep(298.0)
    assert busy_pass() == 0  # 299 s in: not yet overdue
    assert busy_pass() == 1  # 300 s in: a whole interval overdue
    provider.leftovers.append(leftover("gone-2"))
    clock.sleep(300.0)
    assert busy_pass() == 0  # swept 301 s ago: due, but busy
    clock.sleep(298.0)
    assert busy_pass() == 1  # 600 s after the last sweep
    assert provider.deleted() == ["port-gone-1", "port-gone-2"]
