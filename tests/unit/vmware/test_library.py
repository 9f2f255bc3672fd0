"""A content library OVF item as the clone source, against vcsim's vAPI over HTTPS."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from talprov.providers.errors import InvalidRequest, Transient
from talprov.providers.types import Owner
from talprov.talos.join import user_data_for
from talprov.testing import FakeClock
from talprov.vmware.data import VSphereMachineData
from talprov.vmware.images import IMPORTED_KEY, ImportBusy
from talprov.vmware.library import (
    LIBRARY_ITEM_KEY,
    LibraryItem,
    _marker_path,
    deployed_vm,
    library_template_name,
)
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, deprovision, provision
from tests.emulators.factory import FakeImageFactory
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.vmware.conftest import PLACEMENT, machine_request
from tests.unit.vmware.observe import all_vms
from tests.unit.vmware.racing import race_first_step
from tests.unit.vmware.vapi_admin import VapiAdmin


@pytest.fixture
def talos_item(admin: VapiAdmin) -> tuple[str, str]:
    """(library id, item id) of an OVF item holding the Talos test OVA in library 'talos'."""
    library = admin.library("talos")
    return library, admin.ova_item(library, "talos-v1.9.1")


def _templates(server: VcsimServer) -> dict[str, list[dict[str, object]]]:
    return {name: vms for name, vms in all_vms(server).items() if name.startswith("talos-lib-")}


def test_machines_are_cloned_from_a_template_deployed_once_from_the_item(
    provider: VSphereProvider, vcsim: VcsimServer, talos_item: tuple[str, str], owner: Owner,
    clock: FakeClock, image_factory: FakeImageFactory,
) -> None:
    _, item = talos_item
    # By name for one request, by id for the other: the same item, the same template.
    requests = [machine_request("l1", provider_data={
                    **PLACEMENT, "content_library": "talos", "library_item": "talos-v1.9.1"}),
                machine_request("l2", provider_data={
                    **PLACEMENT, "content_library": "talos", "library_item": item})]
    ctxs = [context(provider, request, owner) for request in requests]
    provision(provider, ctxs, clock)

    templates = _templates(vcsim)
    assert list(templates) == [ctxs[0].state.template]
    assert len(next(iter(templates.values()))) == 1  # deployed once
    template = next(iter(templates.values()))[0]
    assert template["config.template"] is True
    extra = template["extra"]
    assert isinstance(extra, dict)
    assert extra[LIBRARY_ITEM_KEY] == item
    assert IMPORTED_KEY in extra
    assert {c.state.template_moid for c in ctxs} == {template["moid"]}
    assert not any(path.endswith(".ova") for path in image_factory.hits)  # no factory OVA

    vms = all_vms(vcsim)
    for request, ctx in zip(requests, ctxs, strict=True):
        assert len(vms[request.id]) == 1
        vm = vms[request.id][0]
        expected = user_data_for(request)  # the config, named after the request
        assert vm["extra"]["guestinfo.talos.config"] == base64.b64encode(
            expected.encode()).decode()
        assert vm["extra"]["disk.enableUUID"] == "TRUE"
        assert vm["config.instanceUuid"] == ctx.state.instance_uuid
        assert vm["runtime.powerState"] == "poweredOn"
        assert vm["config.hardware"].numCPU == 2
    for ctx in ctxs:
        deprovision(provider, ctx, clock)
    assert not {"l1", "l2"} & set(all_vms(vcsim))
    assert list(_templates(vcsim)) == [ctxs[0].state.template]  # kept for the next request


@pytest.mark.parametrize(("library", "item", "field", "match"), [
    ("nope", "talos-v1.9.1", "provider_data.content_library", "no content library 'nope'"),
    ("talos", "nope", "provider_data.library_item", "no item 'nope'"),
    ("talos", "00000000-0000-0000-0000-000000000000", "provider_data.library_item", "no item"),
    ("talos", "an-iso", "provider_data.library_item", "only OVF templates"),
])
def test_an_unknown_library_or_item_is_an_invalid_request_naming_the_field(
    provider: VSphereProvider, admin: VapiAdmin, talos_item: tuple[str, str], owner: Owner,
    clock: FakeClock, library: str, item: str, field: str, match: str,
) -> None:
    admin.item_of_type(talos_item[0], "an-iso", "iso")
    request = machine_request("l3", provider_data={
        **PLACEMENT, "content_library": library, "library_item": item})
    with pytest.raises(InvalidRequest, match=match) as caught:
        provision(provider, [context(provider, request, owner)], clock)
    assert caught.value.field == field


def test_an_item_of_another_library_given_by_id_is_not_found(
    provider: VSphereProvider, admin: VapiAdmin, talos_item: tuple[str, str],
) -> None:
    other = admin.library("other")
    with pytest.raises(InvalidRequest, match="no item") as caught:
        provider.library.find_item(other, talos_item[1])
    assert caught.value.field == "provider_data.library_item"
    assert provider.library.find_library(other) == other  # a library by id


def test_a_deploy_that_crashed_on_this_host_is_removed_and_deployed_again(
    provider: VSphereProvider, vcsim: VcsimServer, talos_item: tuple[str, str],
) -> None:
    data = VSphereMachineData.model_validate(
        {**PLACEMENT, "content_library": "talos", "library_item": "talos-v1.9.1"})
    name = library_template_name(provider.library.resolve(data))
    # What a process killed during the deploy leaves: the VM without the mark.
    provider.library._deploy(data, provider.library.resolve(data), name, None)
    assert len(_templates(vcsim)[name]) == 1
    # Another host's deploy (no local marker, the VM is young): wait for it.
    with pytest.raises(ImportBusy):
        provider.library.ensure(data)
    # This host's deploy (the marker file is still there): remove it and deploy again.
    host, port = provider.client.host, provider.client.port
    marker = _marker_path(provider.runtime.cache_dir, f"{host}:{port}//{name}")
    marker.write_text("crashed")
    found_name, moid = provider.library.ensure(data)
    assert found_name == name
    vms = _templates(vcsim)[name]
    assert [vm["moid"] for vm in vms] == [moid]
    assert vms[0]["config.template"] is True
    assert not marker.exists()


def test_library_fields_go_together_and_exclude_template() -> None:
    with pytest.raises(ValidationError, match="go together"):
        VSphereMachineData.model_validate({"content_library": "talos"})
    with pytest.raises(ValidationError, match="go together"):
        VSphereMachineData.model_validate({"library_item": "x"})
    with pytest.raises(ValidationError, match="cannot be combined"):
        VSphereMachineData.model_validate(
            {"content_library": "talos", "library_item": "x", "template": "t"})


def test_template_names_follow_item_and_content_version() -> None:
    item = LibraryItem(id="e81f3ea5-7042-4774-bce2-25cc290e16e0", name="Talos v1.9.1 (amd64)",
                       library_id="l", type="ovf", content_version="")
    assert library_template_name(item) == "talos-lib-Talos-v1.9.1-amd64-e81f3ea5-c1"
    newer = LibraryItem(**{**item.__dict__, "content_version": "7", "name": "x" * 300})
    assert library_template_name(newer).endswith("-e81f3ea5-c7")
    assert len(library_template_name(newer)) <= 80


def test_a_failed_deploy_answer_is_transient_with_its_reason() -> None:
    # The shape vCenter answers (DeploymentResult) for a failed deploy.
    answer = {"succeeded": False, "error": {"errors": [{
        "category": "SERVER", "error": {"@class": "com.vmware.vapi.std.errors.error",
                                        "messages": [{"id": "x", "default_message":
                                                      "no space left on LocalDS_0"}]}}]}}
    with pytest.raises(Transient, match="SERVER: no space left on LocalDS_0"):
        deployed_vm(answer, "deploy")
    assert deployed_vm({"succeeded": True, "resource_id": {"type": "VirtualMachine",
                                                           "id": "vm-42"}}, "deploy") == "vm-42"
    with pytest.raises(Transient, match="no reason given"):
        deployed_vm({"succeeded": False}, "deploy")


def test_two_concurrent_requests_deploy_the_item_once(
    make_provider: Callable[..., VSphereProvider], vcsim: VcsimServer,
    talos_item: tuple[str, str], owner: Owner,
) -> None:
    pairs = []
    for request_id in ("c1", "c2"):
        provider = make_provider()
        original = provider.vapi.call

        def slow_deploy(what: str, *args: Any, _call: Any = original, **kwargs: Any) -> Any:
            if kwargs.get("action") == "deploy":
                time.sleep(0.3)  # hold the template lock long enough for the other to see it
            return _call(what, *args, **kwargs)

        provider.vapi.call = slow_deploy  # type: ignore[method-assign]
        request = machine_request(request_id, provider_data={
            **PLACEMENT, "content_library": "talos", "library_item": "talos-v1.9.1"})
        pairs.append((provider, context(provider, request, owner)))

    waits = race_first_step(pairs)
    assert any("being deployed" in reason for reason in waits)
    templates = _templates(vcsim)
    assert len(templates) == 1
    assert len(next(iter(templates.values()))) == 1
    assert pairs[0][1].state.template_moid == pairs[1][1].state.template_moid
