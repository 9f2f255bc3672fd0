"""What a lookup that finds nothing says (QA): the setting as written in the
files, and the kind of object looked for.

Before: ``folder: no unique vm object 'no/such'``, ``cluster: no unique host
object 'NoCluster'``; a powered-on ordinary VM was accepted as ``template``.
"""

from __future__ import annotations

from typing import Any

import pytest

from talprov.providers.errors import InvalidRequest
from talprov.providers.types import Owner
from talprov.testing import FakeClock
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, provision
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.observe import all_vms, power_off_out_of_band

SAMPLE_VM = "DC0_C0_RP0_VM0"


def _refused(provider: VSphereProvider, owner: Owner, clock: FakeClock,
             data: dict[str, Any]) -> InvalidRequest:
    request = machine_request("lookup", provider_data={"cluster": "DC0_C0", **data})
    ctx = context(provider, request, owner)
    with pytest.raises(InvalidRequest) as caught:
        provision(provider, [ctx], clock)
    return caught.value


@pytest.mark.parametrize(("data", "field", "words"), [
    ({"folder": "no/such"}, "provider_data.folder", "no VM folder 'no/such'"),
    ({"cluster": "NoCluster"}, "provider_data.cluster", "no cluster or host 'NoCluster'"),
    ({"resource_pool": "no-pool"}, "provider_data.resource_pool", "no resource pool 'no-pool'"),
    ({"datastore": "no-ds"}, "provider_data.datastore", "no datastore 'no-ds'"),
    ({"network": ["VM Network", "no-net"]}, "provider_data.network[1]",
     "no network (port group) 'no-net'"),
    ({"template": "no-template"}, "provider_data.template", "no template or VM 'no-template'"),
])
def test_a_name_that_finds_nothing_names_the_setting_and_the_kind(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
    data: dict[str, Any], field: str, words: str,
) -> None:
    refused = _refused(provider, owner, clock, data)

    assert refused.field == field
    assert str(refused).startswith(f"{field}: {words} in the datacenter")


def test_a_template_folder_that_finds_nothing_names_the_provider_setting(
    make_provider: Any, owner: Owner, clock: FakeClock,
) -> None:
    provider = make_provider(template_folder="no/templates")

    refused = _refused(provider, owner, clock, {})

    assert refused.field == "providers.lab.template_folder"
    assert "no VM folder 'no/templates'" in str(refused)


def test_a_powered_on_vm_is_refused_as_template(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
) -> None:
    refused = _refused(provider, owner, clock, {"template": SAMPLE_VM})

    assert refused.field == "provider_data.template"
    assert f"'{SAMPLE_VM}' is a VM that is poweredOn, not a template" in str(refused)


def test_a_powered_off_vm_is_cloned_as_template(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
) -> None:
    power_off_out_of_band(vcsim, SAMPLE_VM)
    request = machine_request("from-vm", provider_data={
        "cluster": "DC0_C0", "template": SAMPLE_VM, "cpu": 2, "memory": 4096})
    ctx = context(provider, request, owner)

    provision(provider, [ctx], clock)

    assert all_vms(vcsim)["from-vm"][0]["runtime.powerState"] == "poweredOn"
