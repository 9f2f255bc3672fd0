"""An Omni join reaches a vSphere VM: in its template's schematic or in its guestinfo."""

from __future__ import annotations

import base64

import pytest

from talprov.providers.errors import InvalidRequest
from talprov.providers.types import Owner
from talprov.testing import FakeClock
from talprov.vmware.images import SCHEMATIC_KEY
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, provision
from tests.emulators.factory import FakeImageFactory
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.join_checks import JOIN_TOKEN, MODES, assert_join_delivered, join
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.observe import all_vms


def booted_with(vcsim: VcsimServer, factory: FakeImageFactory, vm_name: str,
                template_moid: str | None) -> tuple[str, str]:
    """(schematic id of the template the VM was cloned from, its guestinfo config)."""
    vms = all_vms(vcsim)
    vm = vms[vm_name][0]
    template = next(v for found in vms.values() for v in found if v["moid"] == template_moid)
    assert template["config.template"] is True
    schematic_id = template["extra"][SCHEMATIC_KEY]
    # The template was imported from the factory's OVA of that schematic.
    assert factory.hits[f"/image/{schematic_id}/v1.9.1/vmware-amd64.ova"] >= 1
    assert vm["extra"]["guestinfo.talos.config.encoding"] == "base64"
    config = base64.b64decode(vm["extra"]["guestinfo.talos.config"]).decode()
    return schematic_id, config


@pytest.mark.parametrize("mode", MODES)
def test_the_join_reaches_the_vm(
    provider: VSphereProvider, vcsim: VcsimServer, image_factory: FakeImageFactory,
    owner: Owner, clock: FakeClock, mode: str,
) -> None:
    # kernel_args: in the template's schematic; documents: in guestinfo.
    ctx = context(provider, machine_request("vm", join=join(mode)), owner)
    provision(provider, [ctx], clock)
    schematic_id, config = booted_with(vcsim, image_factory, "vm", ctx.state.template_moid)
    assert_join_delivered(mode, image_factory, schematic_id, config)
    assert JOIN_TOKEN not in " ".join(ctx.events) + repr(ctx.state)


def test_kernel_args_join_on_a_named_template_is_refused(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
) -> None:
    request = machine_request("named", join=join("kernel_args"))
    data = {**request.provider_data, "template": "DC0_H0_VM0"}
    ctx = context(provider, request.model_copy(update={"provider_data": data}), owner)
    with pytest.raises(InvalidRequest) as caught:
        provision(provider, [ctx], clock)
    assert caught.value.field == "provider_data.template"
    assert JOIN_TOKEN not in str(caught.value)
