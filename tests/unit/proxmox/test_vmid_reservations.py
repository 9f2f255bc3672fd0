"""VMIDs reserved for a create end with it: a create that fails, is abandoned, or
whose request is deleted while it runs leaves no id reserved and no VM (issue 15).

Before the fix the book kept such an id for the life of the process (a request
deleted while its create ran, a create whose parameters failed, a create nobody
came back to), and a deletion did not wait for a create in flight: it found no
tagged VM yet and said "gone" at once (fakepve's create then failed on the seed
ISO the deletion removed; a real node's create can finish and leave the VM).
"""

from __future__ import annotations

import time

import pytest

from talprov.providers.errors import InvalidRequest, Transient
from talprov.providers.types import Owner, Retry
from talprov.proxmox import provider as provider_module
from talprov.proxmox.provider import ProxmoxProvider
from talprov.proxmox.vmids import VmidBook
from talprov.testing import FakeClock
from tests.driving import Ctx, context
from tests.emulators.fakepve import FakePveServer
from tests.unit.proxmox.conftest import machine_request

#: Real seconds a VM create runs: the test's deletion must come while it runs,
#: a few calls after its start, also on a loaded machine (1 s was a tight margin).
CREATE_SECONDS = 3.0


def _ready_for_vm(provider: ProxmoxProvider, ctx: Ctx, clock: FakeClock) -> None:
    steps = {s.name: s for s in provider.steps()}
    for name in ("place", "ensure-iso", "ensure-seed"):
        while steps[name].run(ctx) is not None:
            clock.sleep(1)


def _ensure_vm(provider: ProxmoxProvider) -> object:
    return next(s for s in provider.steps() if s.name == "ensure-vm")


def test_a_request_deleted_while_its_create_runs_waits_for_it_and_frees_its_vmid(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock
) -> None:
    ctx = context(provider, machine_request("quitter"), owner)
    _ready_for_vm(provider, ctx, clock)
    fakepve.control("set_timing", time_scale=1.0, task_secs={"qmcreate": CREATE_SECONDS})
    started = _ensure_vm(provider).run(ctx)  # type: ignore[attr-defined]
    assert isinstance(started, Retry)
    vmid = ctx.state.vmid
    assert vmid is not None
    assert provider._vmids.reserved() == {vmid: "quitter"}

    # Deleted now, while the VM is still being created (locked, not tagged yet).
    deadline = time.monotonic() + 20
    waited = []
    while (result := provider.deprovision(ctx)) is not None:
        assert time.monotonic() < deadline, "deprovision did not finish"
        waited.append(result.reason)
        time.sleep(min(result.after, 0.2))
    assert "VM create task running" in waited
    time.sleep(CREATE_SECONDS + 0.2)  # past the end of the create, had it been left running
    assert fakepve.vms() == []
    assert provider._vmids.reserved() == {}


def test_a_reservation_nobody_comes_back_to_expires() -> None:
    clock = FakeClock()
    book = VmidBook(clock, ttl=300.0)
    first = book.reserve("abandoned", lambda: 100, listed=())
    assert book.creating_for_other(first, "someone-else")
    clock.sleep(301)
    # The create's request failed or went to another worker: nothing releases it.
    assert book.reserved() == {}
    assert not book.creating_for_other(first, "someone-else")
    assert book.reserve("next", lambda: 100, listed=()) == 100


def test_a_create_still_polled_keeps_its_reservation() -> None:
    clock = FakeClock()
    book = VmidBook(clock, ttl=300.0)
    vmid = book.reserve("slow", lambda: 100, listed=())
    for _ in range(4):
        clock.sleep(200)
        book.hold(vmid, "slow")  # ensure-vm saw the create task still running
    assert book.reserved() == {100: "slow"}


def test_a_create_that_cannot_be_posted_frees_its_vmid(
    provider: ProxmoxProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = context(provider, machine_request("refused"), owner)
    _ready_for_vm(provider, ctx, clock)

    def bad_params(**_kwargs: object) -> dict[str, object]:
        raise InvalidRequest("no such machine type", field="machine")

    monkeypatch.setattr(provider_module, "create_params", bad_params)
    with pytest.raises(InvalidRequest):
        _ensure_vm(provider).run(ctx)  # type: ignore[attr-defined]
    assert provider._vmids.reserved() == {}


def test_a_create_whose_status_cannot_be_read_is_looked_at_again(
    provider: ProxmoxProvider, owner: Owner
) -> None:
    ctx = context(provider, machine_request("flaky"), owner)
    ctx.state.node, ctx.state.vmid, ctx.state.create_task = "pve1", 105, "UPID:pve1:create"
    provider._vmids.hold(105, "flaky")

    def unreadable(node: str, upid: str) -> dict[str, str]:
        raise Transient("read task: 500 injected")

    provider.client.task_status = unreadable  # type: ignore[method-assign]
    with pytest.raises(Transient):
        _ensure_vm(provider).run(ctx)  # type: ignore[attr-defined]
    # Still the same create: the next attempt (or the deletion) waits for it.
    assert ctx.state.create_task == "UPID:pve1:create"
    assert provider._vmids.reserved() == {105: "flaky"}
