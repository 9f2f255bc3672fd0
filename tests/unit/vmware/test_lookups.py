"""Inventory lookups are made once per provider instance, and again after vCenter
answers that an object is gone."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from talprov.providers.errors import InvalidRequest, NotFound
from talprov.providers.types import Owner
from talprov.testing import FakeClock
from talprov.vmware import inventory
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, provision, run_step
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.observe import connect, power_off_out_of_band


def _count_lookups(provider: VSphereProvider, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name in ("_find", "_pool", "_datacenter"):
        real = getattr(provider.inventory, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            counts[_name] += 1
            return _real(*args)

        monkeypatch.setattr(provider.inventory, name, counted)
    return counts


def _count_soap(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    from pyVmomi import SoapAdapter

    stub: Any = SoapAdapter.SoapStubAdapter
    calls: Counter[str] = Counter()
    invoke = stub.InvokeMethod

    def counted(self: Any, mo: Any, info: Any, args: Any, *rest: Any) -> Any:
        calls[str(info.wsdlName)] += 1
        return invoke(self, mo, info, args, *rest)

    monkeypatch.setattr(stub, "InvokeMethod", counted)
    return calls


def test_the_second_machine_looks_nothing_up_again(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provision(provider, [context(provider, machine_request("first"), owner)], clock)
    calls = _count_soap(monkeypatch)

    provision(provider, [context(provider, machine_request("second"), owner)], clock)

    # Before, each machine found datacenter, template, pool, datastore, network and
    # folder again (9 FindByInventoryPath here).
    assert calls["CloneVM_Task"] == 1
    assert calls["FindByInventoryPath"] == 0
    assert calls["CreateContainerView"] == 0


@pytest.mark.parametrize("why", ["not-found", "age"])
def test_a_not_found_or_the_cache_age_makes_the_next_lookup_ask_vcenter_again(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch, why: str,
) -> None:
    provision(provider, [context(provider, machine_request("first"), owner)], clock)
    counts = _count_lookups(provider, monkeypatch)

    def gone(_si: Any) -> None:
        raise NotFound("the object is gone")

    if why == "not-found":
        with pytest.raises(NotFound):
            provider._with_inventory("clone VM", gone)
    else:
        clock.sleep(inventory.CACHE_SECONDS + 1)
    provision(provider, [context(provider, machine_request("second"), owner)], clock)

    assert counts["_find"] > 0


def test_listings_reuse_the_sessions_container_view_and_see_new_vms(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provision(provider, [context(provider, machine_request("first"), owner)], clock)
    assert [m.request_id for m in provider.list_machines(owner)] == ["first"]
    calls = _count_soap(monkeypatch)

    listed = provider.list_machines(owner)
    provision(provider, [context(provider, machine_request("second"), owner)], clock)
    listed_after = provider.list_machines(owner)

    # Before, every listing made and destroyed a view of its own (3 calls, not 1).
    assert [m.request_id for m in listed] == ["first"]
    assert sorted(m.request_id or "" for m in listed_after) == ["first", "second"]
    assert calls["CreateContainerView"] == 0
    assert calls["DestroyView"] == 0


def test_a_view_vcenter_no_longer_knows_is_made_again(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
) -> None:
    provision(provider, [context(provider, machine_request("first"), owner)], clock)
    provider.list_machines(owner)
    session: Any = provider.client._session()
    for view in list(session._views.values()):
        view.Destroy()  # as if someone else ended it

    assert [m.request_id for m in provider.list_machines(owner)] == ["first"]


def test_ensure_template_looks_up_what_the_clone_needs_so_clone_vm_looks_up_nothing(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = {step.name: step for step in provider.steps()}
    ctx = context(provider, machine_request("ahead"), owner)
    run_step(steps["ensure-template"], ctx, clock)  # runs while the listing is on its way
    calls = _count_soap(monkeypatch)

    assert steps["clone-vm"].run(ctx) is None

    # Before, clone-vm (which waits for the pass's listing) read the template's
    # devices itself (a second Fetch); now only its clone task is read (with the
    # VM it made, in one RetrievePropertiesEx: test_clone_reads.py).
    assert calls["CloneVM_Task"] == 1
    assert calls["Fetch"] == 0
    assert calls["RetrievePropertiesEx"] == 1
    assert calls["FindByInventoryPath"] == 0


def test_a_lookup_that_fails_ahead_is_reported_by_clone_vm(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
) -> None:
    power_off_out_of_band(vcsim, "DC0_C0_RP0_VM0")  # a VM that is on is no clone source
    steps = {step.name: step for step in provider.steps()}
    body = machine_request("nowhere").model_dump()
    # A template of the user's (an imported one looks the network up to import).
    body["provider_data"].update(network="no-such-network", template="DC0_C0_RP0_VM0")
    ctx = context(provider, type(machine_request("x")).model_validate(body), owner)

    assert steps["ensure-template"].run(ctx) is None  # best effort: not its failure
    with pytest.raises(InvalidRequest) as failed:
        steps["clone-vm"].run(ctx)
    assert failed.value.field == "provider_data.network[0]"


def test_finding_a_named_template_and_its_placement_takes_eight_round_trips(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    power_off_out_of_band(vcsim, "DC0_C0_RP0_VM0")  # a VM that is on is no clone source
    steps = {step.name: step for step in provider.steps()}
    body = machine_request("named").model_dump()
    body["provider_data"]["template"] = "DC0_C0_RP0_VM0"
    del body["provider_data"]["network"]
    ctx = context(provider, type(machine_request("x")).model_validate(body), owner)
    assert provider.health().ok  # logged in
    calls = _count_soap(monkeypatch)

    assert steps["ensure-template"].run(ctx) is None

    # No datacenter is configured: it is found with its name in one retrieval
    # that walks the folders from the root folder (before: through a container
    # view made for it, 9 round trips; before that, a view made, read and
    # destroyed, then a Fetch of its name for each path looked up: 12).
    # The second retrieval: whether the named VM is a template or powered off.
    assert calls == {"RetrievePropertiesEx": 2,
                     "FindByInventoryPath": 3,  # the template, the datastore, the cluster
                     "Fetch": 3}  # vmFolder, the cluster's pool, the template's devices


def test_the_datacenter_is_found_in_one_read_without_a_container_view(
    provider: VSphereProvider, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No datacenter configured: every datacenter is read with its name. Before, that
    # read went through a container view of its own (CreateContainerView: one more
    # round trip per session, besides the listing's view of all VMs).
    assert provider.health().ok  # logged in
    calls = _count_soap(monkeypatch)

    provider.client.read("find the datacenter", provider.inventory.datacenter)

    assert calls == Counter({"RetrievePropertiesEx": 1})
    assert provider.inventory._datacenter_label == "DC0"


def test_a_datacenter_in_a_folder_is_found_too(
    provider: VSphereProvider, vcsim: VcsimServer,
) -> None:
    # Datacenters may sit in folders below the root folder, at any depth.
    with connect(vcsim) as si:
        si.content.rootFolder.CreateFolder("site").CreateFolder("rack").CreateDatacenter("DC1")

    with pytest.raises(InvalidRequest, match="2 datacenters"):
        provider.client.read("find the datacenter", provider.inventory.datacenter)
