"""The vSphere driver against vcsim over HTTPS: import once, clone, configure, power, delete."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from talprov.providers.errors import NotFound
from talprov.providers.types import MachineState, Owner, Retry
from talprov.talos.join import user_data_for
from talprov.testing import FakeClock
from talprov.vmware.images import IMPORTED_KEY
from talprov.vmware.provider import VSphereProvider
from talprov.vmware.state import VSphereState
from tests.driving import context, deprovision, provision, run_step
from tests.emulators.factory import FakeImageFactory
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.observe import all_vms, destroy_out_of_band, power_on_out_of_band
from tests.unit.vmware.racing import race_first_step

GIB = 1024**3


def _ova_hits(factory: FakeImageFactory) -> int:
    return sum(n for path, n in factory.hits.items() if path.endswith("/vmware-amd64.ova"))


def test_three_machines_from_one_imported_template_then_deleted(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
    image_factory: FakeImageFactory,
) -> None:
    requests = [machine_request(f"w{i}") for i in range(1, 4)]
    ctxs = [context(provider, request, owner) for request in requests]
    provision(provider, ctxs, clock)

    vms = all_vms(vcsim)
    templates = [name for name, found in vms.items() if name.startswith("talos-v1.9.1-amd64-")]
    assert len(templates) == 1
    assert len(vms[templates[0]]) == 1
    template = vms[templates[0]][0]
    assert template["config.template"] is True
    assert IMPORTED_KEY in template["extra"]
    assert _ova_hits(image_factory) == 1
    assert {c.state.template_moid for c in ctxs} == {template["moid"]}

    for request, ctx in zip(requests, ctxs, strict=True):
        assert len(vms[request.id]) == 1, f"{request.id} cloned more than once"
        vm = vms[request.id][0]
        expected = user_data_for(request)  # the config, named after the request
        assert vm["extra"]["guestinfo.talos.config"] == base64.b64encode(
            expected.encode()).decode()
        assert vm["extra"]["guestinfo.talos.config.encoding"] == "base64"
        assert vm["extra"]["disk.enableUUID"] == "TRUE"
        assert vm["extra"]["talprov-request"] == request.id
        assert vm["config.hardware"].numCPU == 4
        assert vm["config.hardware"].memoryMB == 8192
        assert vm["disk_bytes"][0] == 30 * GIB
        assert vm["runtime.powerState"] == "poweredOn"
        assert vm["config.template"] is False
        assert ctx.state.infra_id == vm["moid"]
        assert ctx.state.machine_uuid == vm["config.uuid"]
        assert vm["config.instanceUuid"] == ctx.state.instance_uuid

    calls: list[str] = []
    original = provider.client.call

    def counting(what: str, fn: Any) -> Any:
        calls.append(what)
        return original(what, fn)

    provider.client.call = counting  # type: ignore[method-assign]
    listed = {m.request_id: m for m in provider.list_machines(owner)}
    provider.client.call = original  # type: ignore[method-assign]
    assert calls == ["list VMs"]  # one retrieval for all VMs, not one per VM
    assert set(listed) == {"w1", "w2", "w3"}
    assert all(m.state == MachineState.RUNNING for m in listed.values())
    assert listed["w2"].machine_uuid == vms["w2"][0]["config.uuid"]
    assert listed["w2"].labels == {"talprov.set": "workers"}
    # Another instance or installation sees none of them.
    assert provider.list_machines(Owner(owner.installation, "other")) == []

    for ctx in ctxs:
        deprovision(provider, ctx, clock)
    remaining = all_vms(vcsim)
    assert not {"w1", "w2", "w3"} & set(remaining)
    assert templates[0] in remaining  # the template stays for the next request
    assert provider.list_machines(owner) == []
    # Deprovisioning again is success: the VM is gone.
    assert provider.deprovision(ctxs[0]) is None


def test_two_concurrent_requests_import_a_new_schematic_once(
    make_provider: Callable[..., VSphereProvider], vcsim: VcsimServer, owner: Owner,
    image_factory: FakeImageFactory,
) -> None:
    image_factory.body_delay = 0.3  # the first importer holds its lock while downloading
    extensions = {"extensions": ("siderolabs/iscsi-tools",)}
    ctxs = []
    for request_id in ("a1", "a2"):
        provider = make_provider()
        ctxs.append((provider, context(provider, machine_request(request_id, **extensions),
                                       owner)))

    waits = race_first_step(ctxs)
    assert waits, "the race did not happen: nobody waited for the other import"
    assert any("being imported" in reason for reason in waits)
    names = [name for name in all_vms(vcsim) if name.startswith("talos-v1.9.1-amd64-")]
    assert len(names) == 1
    assert len(all_vms(vcsim)[names[0]]) == 1
    assert ctxs[0][1].state.template_moid == ctxs[1][1].state.template_moid
    assert _ova_hits(image_factory) == 1


def test_clone_step_rerun_after_a_crash_makes_one_vm(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
) -> None:
    request = machine_request("c1")
    steps = {step.name: step for step in provider.steps()}
    before = context(provider, request, owner)
    run_step(steps["ensure-template"], before, clock)
    started = steps["clone-vm"].run(before)
    # vcsim ends a clone within the call, and the step looks at its task at once.
    assert started is None
    assert before.state.clone_task is None
    assert before.state.vm_moid is not None
    # The process dies before the runner stores the state: a new one starts over.
    after = context(provider, request, owner, state=VSphereState())
    for name in ("ensure-template", "clone-vm", "configure-vm", "power-on", "wait-running"):
        run_step(steps[name], after, clock)
    # ... and the same happens once more, now with the clone long finished.
    again = context(provider, request, owner, state=VSphereState())
    run_step(steps["ensure-template"], again, clock)
    run_step(steps["clone-vm"], again, clock)

    vms = all_vms(vcsim)
    assert len(vms["c1"]) == 1
    assert after.state.vm_moid == again.state.vm_moid == vms["c1"][0]["moid"]
    assert any("adopted" in event for event in after.events)
    assert [m.request_id for m in provider.list_machines(owner)] == ["c1"]


def test_vm_deleted_out_of_band_is_noticed(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
) -> None:
    ctx = context(provider, machine_request("o1"), owner)
    provision(provider, [ctx], clock)
    assert [m.request_id for m in provider.list_machines(owner)] == ["o1"]
    destroy_out_of_band(vcsim, "o1")
    assert provider.list_machines(owner) == []
    assert provider.find_vm(owner, "o1") is None
    assert provider.deprovision(ctx) is None


def test_deprovision_powers_off_hard_when_the_guest_does_not_shut_down(
    make_provider: Callable[..., VSphereProvider], vcsim: VcsimServer, owner: Owner,
    clock: FakeClock,
) -> None:
    provider = make_provider(shutdown_timeout=30.0, poll_interval=5.0)
    ctx = context(provider, machine_request("d1"), owner)
    provision(provider, [ctx], clock)
    first = provider.deprovision(ctx)
    assert isinstance(first, Retry)
    assert ctx.state.shutdown_started_at == clock()
    # The guest comes straight back up (as if it ignored the request): wait, then hard off.
    power_on_out_of_band(vcsim, "d1")
    clock.sleep(10)
    assert isinstance(provider.deprovision(ctx), Retry)
    assert not ctx.state.hard_off  # still within shutdown_timeout
    clock.sleep(30)
    deprovision(provider, ctx, clock)
    assert ctx.state.hard_off
    assert provider.find_vm(owner, "d1") is None
    assert "d1" not in all_vms(vcsim)
    assert any("did not shut down" in event for event in ctx.events)


def _batch(provider: VSphereProvider, name: str) -> Any:
    step = next(step for step in provider.steps() if step.name == name)
    assert step.run_batch is not None
    return step.run_batch


def test_batched_clone_after_a_crash_adopts_the_vm_it_made_and_clones_the_rest(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
) -> None:
    steps = {step.name: step for step in provider.steps()}
    first = context(provider, machine_request("b1"), owner)
    run_step(steps["ensure-template"], first, clock)
    run_step(steps["clone-vm"], first, clock)
    # The process dies before storing b1's state; b1 and b2 come back as one batch,
    # which looks up both VMs in one read instead of a FindByUuid each.
    ctxs = [context(provider, machine_request(rid), owner, state=VSphereState())
            for rid in ("b1", "b2")]
    for ctx in ctxs:
        run_step(steps["ensure-template"], ctx, clock)
    assert list(_batch(provider, "clone-vm")(ctxs)) == [None, None]

    vms = all_vms(vcsim)
    assert len(vms["b1"]) == 1
    assert len(vms["b2"]) == 1
    assert ctxs[0].state.vm_moid == first.state.vm_moid == vms["b1"][0]["moid"]
    assert any("adopted" in event for event in ctxs[0].events)
    assert ctxs[1].state.vm_moid == vms["b2"][0]["moid"]


def test_batched_configure_with_one_vm_removed_fails_only_that_request(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
) -> None:
    steps = {step.name: step for step in provider.steps()}
    ctxs = [context(provider, machine_request(rid), owner) for rid in ("g1", "g2", "g3")]
    for ctx in ctxs:
        run_step(steps["ensure-template"], ctx, clock)
        run_step(steps["clone-vm"], ctx, clock)
    destroy_out_of_band(vcsim, "g2")

    outcomes = list(_batch(provider, "configure-vm")(ctxs))

    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], NotFound)
    assert ctxs[0].state.configured
    assert ctxs[2].state.configured
    assert not ctxs[1].state.configured
    assert ctxs[0].state.machine_uuid == all_vms(vcsim)["g1"][0]["config.uuid"]
