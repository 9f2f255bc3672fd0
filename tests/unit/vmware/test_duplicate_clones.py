"""A second VM of one request, left by a clone whose process was stopped.

QA: vcsim with ``-method-delay CloneVM_Task=6000``, ``machine create --wait``
stopped 3.5 s in, then ``reconcile --once``: the stopped process's clone
completed after the resumed worker had looked for the VM by its instance UUID,
so the worker cloned again, and vcsim (which allows duplicate names in a
folder) kept both VMs. Here the first clone's answer is lost and the resumed
worker's look-up misses it; the second clone succeeds, as on vcsim. The
request must end with one VM: the one its state records.
"""

from __future__ import annotations

import pytest

from talprov.providers.ownership import ownership_tags
from talprov.providers.types import MachineState, Owner
from talprov.testing import FakeClock
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, provision
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.observe import all_vms, clone_out_of_band
from tests.unit.vmware.test_clone_name_taken import second_clone_after_a_lost_one


def test_a_second_vm_of_the_request_is_destroyed_once_the_request_runs(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first clone's answer is lost; the resumed look-up by UUID misses its VM.
    calls, ctx = second_clone_after_a_lost_one(provider, owner, clock, monkeypatch, "ok")

    provision(provider, [ctx], clock)

    assert calls["CloneVM_Task"] == 2  # the duplicate was made: the case QA met
    listed = [m for m in provider.list_machines(owner) if m.request_id == "w1"]
    assert [m.infra_id for m in listed] == [ctx.state.vm_moid]
    assert listed[0].state == MachineState.RUNNING
    assert any("second VM" in e for e in ctx.events)


def test_a_vm_of_the_same_name_and_request_id_that_another_installation_owns_stays(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
) -> None:
    theirs = ownership_tags(Owner("another-installation", owner.instance),
                            machine_request("k3"))
    clone_out_of_band(vcsim, "DC0_C0_RP0_VM0", "k3", theirs)
    ctx = context(provider, machine_request("k3"), owner)

    provision(provider, [ctx], clock)

    named = all_vms(vcsim)["k3"]
    assert len(named) == 2  # theirs, and this request's
    assert ctx.state.vm_moid in {vm["moid"] for vm in named}
    assert not any("second VM" in e for e in ctx.events)
