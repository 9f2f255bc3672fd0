"""Requests of one pass go through the Proxmox steps together: shared reads, no
collisions between their own creates, no waiting on each other's creates.

Where it matters fakepve runs at time_scale 1 with creates that take a second,
as on a real node (at time_scale 0 a create ends before its answer, which hid
the wait on another request's create).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from talprov.providers.types import Owner, Retry
from talprov.proxmox.provider import ProxmoxProvider
from talprov.testing import FakeClock
from tests.driving import context, provision
from tests.emulators.fakepve import FakePveServer
from tests.unit.proxmox.conftest import machine_request


def _slow_creates(fakepve: FakePveServer) -> None:
    # Long enough that both creates still run when the test looks at them a few
    # calls later, also on a loaded machine (1 s was a tight margin); nothing
    # waits for them to end.
    fakepve.control("set_timing", time_scale=1.0, task_secs={"qmcreate": 5.0})


def test_a_create_in_flight_for_another_request_does_not_hold_up_the_next(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock
) -> None:
    first, second = (context(provider, machine_request(n), owner) for n in ("one", "two"))
    steps = {s.name: s for s in provider.steps()}
    for name in ("place", "ensure-iso", "ensure-seed"):
        for ctx in (first, second):
            while steps[name].run(ctx) is not None:
                clock.sleep(1)
    _slow_creates(fakepve)

    started = steps["ensure-vm"].run(first)
    assert isinstance(started, Retry)
    assert first.state.create_task is not None
    # The first VM is still being created (locked, untagged); it is not the second's.
    assert [vm for vm in fakepve.vms() if "tags" not in vm["config"]] != []

    result = steps["ensure-vm"].run(second)

    assert isinstance(result, Retry)
    # It created its own VM (whose task, looked at at once, still runs) instead of
    # waiting for the first one's.
    assert result.reason == "VM create task running"
    assert second.state.create_task is not None
    assert second.state.vmid != first.state.vmid


def test_a_batch_asks_for_one_vmid_and_its_creates_never_collide(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock
) -> None:
    ctxs = [context(provider, machine_request(f"w-{i}"), owner) for i in range(5)]

    provision(provider, ctxs, clock)

    calls = Counter(f"{m} {p.split('/api2/json/', 1)[-1]}"
                    for m, p in fakepve.control("requests"))
    assert calls["GET cluster/nextid"] == 1
    creates = [t for t in fakepve.control("tasks") if t["type"] == "qmcreate"]
    assert len(creates) == 5
    assert all(t["exitstatus"] == "OK" for t in creates)
    assert len({ctx.state.vmid for ctx in ctxs}) == 5
    # One ISO listing for the seeds of the whole batch (and one for the boot ISO).
    assert calls["GET nodes/pve1/storage/local/content"] == 2


def test_creates_that_end_within_their_batch_never_collide_on_a_vmid(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock
) -> None:
    # Each create's task is looked at right after the POST and has ended (time
    # scale 0); the batch's listing predates those VMs, so their ids must stay
    # reserved until the batch ends or a later create in it would reuse one.
    ctxs = [context(provider, machine_request(f"q-{i}"), owner) for i in range(12)]
    steps = {s.name: s for s in provider.steps()}
    for name in ("place", "ensure-iso", "ensure-seed"):
        for ctx in ctxs:
            while steps[name].run(ctx) is not None:
                clock.sleep(1)
    batch = steps["ensure-vm"].run_batch
    assert batch is not None

    assert list(batch(ctxs)) == [None] * 12

    calls = Counter(f"{m} {p.split('/api2/json/', 1)[-1]}"
                    for m, p in fakepve.control("requests"))
    assert calls["POST nodes/pve1/qemu"] == 12
    assert len({ctx.state.vmid for ctx in ctxs}) == 12


def _start_batch_to_the_start(provider: ProxmoxProvider, ctxs: list[Any],
                              clock: FakeClock) -> Any:
    steps = {s.name: s for s in provider.steps()}
    for name in ("place", "ensure-iso", "ensure-seed", "ensure-vm"):
        for ctx in ctxs:
            while steps[name].run(ctx) is not None:
                clock.sleep(1)
    batch = steps["start-vm"].run_batch
    assert batch is not None
    return batch


def _start_task_reads(fakepve: FakePveServer, ctxs: list[Any]) -> int:
    upids = [t["upid"] for t in fakepve.control("tasks") if t["type"] == "qmstart"]
    assert len(upids) == len(ctxs)
    return sum(1 for _m, p in fakepve.control("requests") if any(u in p for u in upids))


def test_starts_that_ran_at_once_are_seen_in_one_listing_not_in_each_task(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock
) -> None:
    ctxs = [context(provider, machine_request(f"s-{i}"), owner) for i in range(4)]
    batch = _start_batch_to_the_start(provider, ctxs, clock)

    assert list(batch(ctxs)) == [None] * 4

    # Before, each start task was read right after its POST (4 reads here).
    assert _start_task_reads(fakepve, ctxs) == 0
    assert all(ctx.state.start_task is None for ctx in ctxs)
    assert {vm["status"] for vm in fakepve.vms()} == {"running"}


def test_starts_still_running_are_followed_by_their_tasks(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock
) -> None:
    ctxs = [context(provider, machine_request(f"t-{i}"), owner) for i in range(3)]
    batch = _start_batch_to_the_start(provider, ctxs, clock)
    fakepve.control("set_timing", time_scale=1.0, task_secs={"qmstart": 30.0})

    outcomes = list(batch(ctxs))

    assert all(isinstance(o, Retry) for o in outcomes)
    assert all(ctx.state.start_task is not None for ctx in ctxs)
    assert _start_task_reads(fakepve, ctxs) == 3
