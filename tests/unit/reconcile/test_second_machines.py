"""The reconciler destroys second machines of requests (RemovesSecondMachines).

A second machine carries a request's marks but is not the machine its record
names. The pass's listing shows it; the reconciler has it destroyed only under
the request's lease, when the record still names a listed machine and its
machine-creating steps are behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from talprov.providers.errors import Transient
from talprov.providers.protocol import RemovesSecondMachines, Runtime, Step
from talprov.providers.types import (
    Machine,
    MachineRequest,
    MachineState,
    Owner,
    Retry,
    Stage,
)
from talprov.reconcile import second_machines
from talprov.reconcile.observing import (
    MISSING_PASSES_BEFORE_LOST,
    by_request,
    machine_lost,
    machines_by_request,
)
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.service.metrics import Metrics, instrument
from talprov.store.store import Store
from talprov.testing import FakeClock, ProviderDouble

#: Later than any test here moves its FakeClock, so no request becomes due.
IN_AN_HOUR = datetime.fromtimestamp(FakeClock().now, UTC) + timedelta(hours=1)
INTERVAL = 300.0


class Doubling(ProviderDouble):
    """Lists what ``machines`` holds; removes second machines when asked."""

    type_name: ClassVar[str] = "doubling"

    def __init__(self, name: str = "lab") -> None:
        self.name = name
        self.machines: list[Machine] = []
        self.removed: list[str] = []
        #: The ``kept`` machine of every removal asked for.
        self.kept_asked: list[str] = []
        self.remove_error: Exception | None = None
        #: Runs inside list_machines, after the listing was taken.
        self.while_listing: Callable[[], None] | None = None

    def steps(self) -> Sequence[Step]:
        return (Step("create", lambda ctx: None, creates_machine=True),
                Step("wait", lambda ctx: Retry(after=1, reason="waiting")))

    def list_machines(self, owner: Owner) -> list[Machine]:
        listing = list(self.machines)
        if self.while_listing is not None:
            self.while_listing()
        return listing

    def remove_second_machine(self, owner: Owner, machine: Machine, kept: str) -> str | None:
        self.removed.append(machine.infra_id)
        self.kept_asked.append(kept)
        if self.remove_error is not None:
            raise self.remove_error
        if not any(m.infra_id == kept for m in self.machines):
            return None  # refused, as a driver must: the request's own machine is gone
        self.machines.remove(machine)
        return f"destroyed {machine.infra_id}, a second machine of this request"


class NotRemoving(Doubling):
    """The same double, without the optional protocol's method."""

    remove_second_machine = None  # type: ignore[assignment]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'state.db'}")
    opened.migrate()
    yield opened
    opened.close()


def reconciler_of(store: Store, clock: FakeClock, tmp_path: Path, provider: Any) -> Reconciler:
    runtime = Runtime(installation="inst", cache_dir=tmp_path, clock=clock, sleep=clock.sleep)
    return Reconciler(store, {provider.name: ProviderHandle(provider, concurrency=2)}, runtime,
                      sweep_interval=INTERVAL)


def put(store: Store, rid: str, stage: Stage, infra_id: str | None, *,
        step: str | None = "wait", due: bool = False) -> None:
    """A request of instance ``lab`` in ``stage`` at ``step``, recording ``infra_id``."""
    record = store.create_request(MachineRequest(id=rid, provider="lab",
                                                 talos_version="v1.13.9"))
    if stage == Stage.DEPROVISIONING:
        record = store.request_deletion(rid)
    store.save_progress(
        rid, expected_version=record.version, stage=stage,
        step_index=1 if step == "wait" else 0, step_name=step, state={"infra_id": infra_id},
        error=None, attempts=0, next_attempt_at=None if due else IN_AN_HOUR,
        step_started_at=None, infra_id=infra_id, machine_uuid=None, addresses=(), events=(),
    )


def listed(provider: Doubling, rid: str, *ids: str) -> None:
    provider.machines += [Machine(infra_id=i, state=MachineState.RUNNING, request_id=rid)
                          for i in ids]


def events_of(store: Store, rid: str) -> list[str]:
    return [e.message for e in store.events(rid)]


def test_a_second_machine_of_a_provisioned_request_is_destroyed_under_its_lease(
    store: Store, clock: FakeClock, tmp_path: Path,
) -> None:
    provider = Doubling()
    put(store, "r1", Stage.PROVISIONED, "m-1")
    listed(provider, "r1", "m-2", "m-1")  # the second one listed first
    reconciler = reconciler_of(store, clock, tmp_path, provider)
    held_meanwhile: list[tuple[str, Any] | None] = []
    remove = provider.remove_second_machine

    def watched(owner: Owner, machine: Machine, kept: str) -> str | None:
        held_meanwhile.append(store.lease_holder("r1"))
        return remove(owner, machine, kept)

    provider.remove_second_machine = watched  # type: ignore[method-assign]

    report = reconciler.run_pass()

    assert report.second_machines == 1
    assert provider.removed == ["m-2"]
    holder = held_meanwhile[0]
    assert holder is not None
    assert holder[0] == reconciler.worker_id
    assert store.lease_holder("r1") is None  # given back
    assert any("destroyed m-2" in e and "this request's machine is m-1" in e
               for e in events_of(store, "r1"))
    record = store.get_request("r1")
    assert record is not None
    assert (record.stage, record.infra_id) == (Stage.PROVISIONED, "m-1")
    assert reconciler.run_pass().second_machines == 0  # nothing left to do


def test_a_machine_another_request_records_is_never_a_second_machine(
    store: Store, clock: FakeClock, tmp_path: Path,
) -> None:
    # A machine the listing reads as r1's while r2's record names it (a driver whose
    # machines list other requests beside their own, as AWS's batch members do)
    # is r2's machine: never removed as r1's second.
    provider = Doubling()
    put(store, "r1", Stage.PROVISIONED, "m-1")
    put(store, "r2", Stage.PROVISIONED, "m-2")
    listed(provider, "r1", "m-1", "m-2", "m-3")
    reconciler = reconciler_of(store, clock, tmp_path, provider)

    assert reconciler.run_pass().second_machines == 1

    assert provider.removed == ["m-3"]


def test_requests_mid_create_without_a_machine_or_being_deleted_keep_every_machine(
    store: Store, clock: FakeClock, tmp_path: Path,
) -> None:
    provider = Doubling()
    put(store, "no-id", Stage.PROVISIONING, None, step="create")
    put(store, "at-create", Stage.PROVISIONING, "m-b1", step="create")
    put(store, "deleting", Stage.DEPROVISIONING, "m-c1")
    put(store, "unknown-step", Stage.PROVISIONING, "m-d1", step="renamed-since")
    put(store, "after-create", Stage.PROVISIONING, "m-e1", step="wait")
    put(store, "lost-own", Stage.PROVISIONED, "m-f1")  # its own machine is not listed
    put(store, "held-elsewhere", Stage.PROVISIONED, "m-g1")
    reconciler = reconciler_of(store, clock, tmp_path, provider)
    assert store.claim("held-elsewhere", owner="elsewhere:1", ttl=600, now=reconciler.now())
    listed(provider, "no-id", "m-a1", "m-a2")
    listed(provider, "at-create", "m-b1", "m-b2")
    listed(provider, "deleting", "m-c1", "m-c2")
    listed(provider, "unknown-step", "m-d1", "m-d2")
    listed(provider, "after-create", "m-e1", "m-e2")
    listed(provider, "lost-own", "m-f2", "m-f3")
    listed(provider, "held-elsewhere", "m-g1", "m-g2")
    assert reconciler.run_pass().second_machines == 0  # requests on their way: later
    clock.sleep(INTERVAL)

    report = reconciler.run_pass()

    assert provider.removed == ["m-e2"]  # the only one whose creating step is behind it
    assert report.second_machines == 1
    holder = store.lease_holder("held-elsewhere")
    assert holder is not None
    assert holder[0] == "elsewhere:1"


def test_a_request_whose_record_changed_after_the_listing_keeps_its_machines(
    store: Store, clock: FakeClock, tmp_path: Path,
) -> None:
    provider = Doubling()
    put(store, "r1", Stage.PROVISIONED, "m-1")
    listed(provider, "r1", "m-1", "m-2")

    def moved_on() -> None:  # e.g. another worker recorded m-2 meanwhile
        record = store.get_request("r1")
        assert record is not None
        store.save_progress(
            "r1", expected_version=record.version, stage=Stage.PROVISIONED, step_index=2,
            step_name=None, state={"infra_id": "m-2"}, error=None, attempts=0,
            next_attempt_at=None, step_started_at=None, infra_id="m-2", machine_uuid=None,
            addresses=(), events=())

    provider.while_listing = moved_on

    assert reconciler_of(store, clock, tmp_path, provider).run_pass().second_machines == 0
    assert provider.removed == []


def test_the_driver_is_told_which_machine_to_keep_and_refuses_when_it_vanished(
    store: Store, clock: FakeClock, tmp_path: Path,
) -> None:
    provider = Doubling()
    put(store, "r1", Stage.PROVISIONED, "m-1")
    listed(provider, "r1", "m-1", "m-2")

    def own_vanished() -> None:  # m-1 deleted (an operator, a lost host) after the listing
        provider.machines = [m for m in provider.machines if m.infra_id != "m-1"]

    provider.while_listing = own_vanished

    report = reconciler_of(store, clock, tmp_path, provider).run_pass()

    assert (provider.removed, provider.kept_asked) == (["m-2"], ["m-1"])
    assert [m.infra_id for m in provider.machines] == ["m-2"]  # the only one left lives
    assert (report.second_machines, report.errors) == (0, [])


def test_a_pass_that_only_deletes_removes_them_and_one_over_some_requests_does_not(
    store: Store, clock: FakeClock, tmp_path: Path,
) -> None:
    provider = Doubling()
    put(store, "r1", Stage.PROVISIONED, "m-1")
    put(store, "doomed", Stage.DEPROVISIONING, "m-8", due=True)
    listed(provider, "r1", "m-1", "m-2")
    reconciler = reconciler_of(store, clock, tmp_path, provider)

    assert reconciler.run_pass(only=["r1"]).second_machines == 0  # not a full pass
    report = reconciler.run_pass()

    assert report.worked == 1  # the deletion: on nobody's way to provisioned
    assert report.second_machines == 1
    assert provider.removed == ["m-2"]


def test_an_instance_at_work_has_them_removed_only_once_they_are_seen_for_an_interval(
    store: Store, clock: FakeClock, tmp_path: Path,
) -> None:
    provider = Doubling()
    put(store, "r1", Stage.PROVISIONED, "m-1")
    put(store, "busy", Stage.PROVISIONING, "m-9", due=True)  # its step runs every pass
    listed(provider, "r1", "m-1", "m-2")
    listed(provider, "busy", "m-9")
    reconciler = reconciler_of(store, clock, tmp_path, provider)

    assert reconciler.run_pass().worked == 1
    clock.sleep(INTERVAL / 2)
    assert reconciler.run_pass().worked == 1
    assert provider.removed == []
    clock.sleep(INTERVAL / 2)
    report = reconciler.run_pass()

    assert report.worked == 1
    assert provider.removed == ["m-2"]


def test_a_failed_removal_is_reported_and_tried_again_after_the_interval(
    store: Store, clock: FakeClock, tmp_path: Path,
) -> None:
    provider = Doubling()
    provider.remove_error = Transient("vCenter busy", retry_after=1)
    put(store, "r1", Stage.PROVISIONED, "m-1")
    listed(provider, "r1", "m-1", "m-2")
    reconciler = reconciler_of(store, clock, tmp_path, provider)

    report = reconciler.run_pass()

    assert report.second_machines == 0
    assert report.errors == ["lab: remove second machine m-2 of request r1: vCenter busy"]
    assert store.lease_holder("r1") is None
    reconciler.run_pass()
    assert provider.removed == ["m-2"]  # not hammered every pass
    provider.remove_error = None
    clock.sleep(INTERVAL)
    assert reconciler.run_pass().second_machines == 1
    assert provider.removed == ["m-2", "m-2"]


def test_an_interrupt_while_removing_gives_the_lease_back(
    store: Store, clock: FakeClock, tmp_path: Path,
) -> None:
    provider = Doubling()
    put(store, "r1", Stage.PROVISIONED, "m-1")
    listed(provider, "r1", "m-1", "m-2")
    provider.remove_error = KeyboardInterrupt()  # type: ignore[assignment]
    reconciler = reconciler_of(store, clock, tmp_path, provider)

    with pytest.raises(KeyboardInterrupt):
        reconciler.run_pass()

    assert provider.removed == ["m-2"]
    assert store.lease_holder("r1") is None
    assert reconciler.held_leases() == set()
    reconciler.close()


def test_an_unexpected_error_while_removing_is_reported_and_gives_the_lease_back(
    store: Store, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = Doubling()
    put(store, "r1", Stage.PROVISIONED, "m-1")
    listed(provider, "r1", "m-1", "m-2")
    reconciler = reconciler_of(store, clock, tmp_path, provider)

    def broken(record: Any, provider: Any) -> bool:
        raise RuntimeError("a bug whose text names password=hunter2")

    monkeypatch.setattr(second_machines, "after_creation", broken)

    report = reconciler.run_pass()

    assert report.errors == ["lab: second machines: unexpected RuntimeError"]
    assert (report.second_machines, provider.removed) == (0, [])
    assert store.lease_holder("r1") is None
    assert reconciler.held_leases() == set()
    reconciler.close()


def test_a_provider_without_the_protocol_is_left_alone(
    store: Store, clock: FakeClock, tmp_path: Path,
) -> None:
    provider = NotRemoving()
    assert isinstance(Doubling(), RemovesSecondMachines)
    assert not isinstance(provider, RemovesSecondMachines)
    put(store, "r1", Stage.PROVISIONED, "m-1")
    listed(provider, "r1", "m-1", "m-2")

    report = reconciler_of(store, clock, tmp_path, provider).run_pass()

    assert (report.second_machines, report.errors) == (0, [])
    assert len(provider.machines) == 2


def test_the_services_instrumenting_wrapper_keeps_the_protocol(
    store: Store, clock: FakeClock, tmp_path: Path,
) -> None:
    provider = Doubling()
    wrapped = instrument(provider, "lab", Metrics())
    assert isinstance(wrapped, RemovesSecondMachines)
    put(store, "r1", Stage.PROVISIONED, "m-1")
    listed(provider, "r1", "m-1", "m-2")
    reconciler = reconciler_of(store, clock, tmp_path, provider)
    reconciler.providers = {"lab": ProviderHandle(wrapped)}

    assert reconciler.run_pass().second_machines == 1
    assert provider.removed == ["m-2"]


def test_steps_and_the_drift_check_get_the_machine_the_record_names() -> None:
    def machine(infra_id: str, rid: str | None = "r1") -> Machine:
        return Machine(infra_id=infra_id, state=MachineState.RUNNING, request_id=rid)

    machines = [machine("m-1"), machine("m-2"), machine("x", None), machine("m-3", "r2")]
    grouped = machines_by_request(machines)

    assert grouped == {"r1": machines[:2], "r2": [machines[3]]}
    assert by_request(grouped, {"r1": "m-1"})["r1"].infra_id == "m-1"
    assert by_request(grouped, {"r1": "m-2"})["r1"].infra_id == "m-2"
    assert by_request(grouped, {"r1": None})["r1"].infra_id == "m-2"  # the last listed
    assert by_request(grouped, {})["r2"].infra_id == "m-3"
    assert "r1" not in by_request(grouped, {"r1": "m-9"})  # its own is not listed


def test_a_request_whose_own_machine_is_gone_is_lost_though_its_second_is_listed(
    store: Store, clock: FakeClock, tmp_path: Path,
) -> None:
    provider = Doubling()
    put(store, "r1", Stage.PROVISIONED, "m-1")
    provider.machines.append(Machine(infra_id="m-2", state=MachineState.RUNNING,
                                     request_id="r1", addresses=("10.0.0.2",)))
    reconciler = reconciler_of(store, clock, tmp_path, provider)

    for _ in range(MISSING_PASSES_BEFORE_LOST):
        reconciler.run_pass()

    record = store.get_request("r1")
    assert record is not None
    assert (record.stage, record.infra_id) == (Stage.FAILED, "m-1")
    assert machine_lost(record.error)
    assert "m-1 disappeared" in (record.error or "")
    assert tuple(record.addresses) == ()  # never the other machine's
    assert provider.removed == []

