"""Placement, tags, models and error translation: no server needed."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from proxmoxer.core import ResourceException
from pydantic import ValidationError

from talprov.providers.errors import (
    AuthError,
    CapacityError,
    InstanceAccessRefused,
    InvalidRequest,
    NotFound,
    Transient,
)
from talprov.providers.labels import LABEL_REQUEST_SET, LABEL_SET
from talprov.providers.ownership import ownership_tags
from talprov.providers.types import Owner
from talprov.proxmox import images, vm
from talprov.proxmox.config import ProxmoxConfig
from talprov.proxmox.data import ProxmoxMachineData
from talprov.proxmox.errors import VmidTaken, translate
from talprov.proxmox.placement import (
    NodeInfo,
    choose_node,
    choose_storage,
    nodes_from_resources,
    set_members_per_node,
)
from talprov.proxmox.tags import decode_tags, encode_tags, owned_by, tag_value
from talprov.talos.hostname import with_hostname
from tests.unit.proxmox.conftest import machine_request

GIB = 1024**3


def _vm(node: str, set_name: str, label: str = LABEL_SET) -> dict[str, Any]:
    return {"type": "qemu", "node": node, "vmid": 1,
            "tags": f"talprov-label-{label}+{set_name}"}


def test_node_choice_prefers_fewest_set_members_then_free_memory() -> None:
    resources: list[dict[str, Any]] = [
        {"type": "node", "node": "a", "status": "online", "mem": 1 * GIB, "maxmem": 64 * GIB},
        {"type": "node", "node": "b", "status": "online", "mem": 1 * GIB, "maxmem": 32 * GIB},
        {"type": "node", "node": "c", "status": "offline"},
        _vm("a", "workers"), _vm("a", "workers"), _vm("b", "workers"), _vm("b", "cp"),
        _vm("a", "workers", LABEL_REQUEST_SET),
    ]
    nodes = nodes_from_resources(resources)
    workers = set_members_per_node(resources, (LABEL_SET, "workers"))
    assert workers == Counter({"a": 2, "b": 1})
    assert choose_node(nodes, (), workers) == "b"
    # A request set of the same name is another set.
    assert set_members_per_node(resources, (LABEL_REQUEST_SET, "workers")) == Counter({"a": 1})
    # Same count: the node with more free memory.
    assert choose_node(nodes, (), set_members_per_node(resources, (LABEL_SET, "new-set"))) == "a"
    assert choose_node(nodes, (), set_members_per_node(resources, None)) == "a"
    assert choose_node(nodes, ("a",), workers) == "a"
    with pytest.raises(CapacityError):
        choose_node(nodes, ("c",), workers)
    with pytest.raises(InvalidRequest) as caught:
        choose_node(nodes, ("zz",), workers)
    assert caught.value.field == "allowed_nodes"


def test_ties_are_broken_by_name() -> None:
    nodes = [NodeInfo("n2", True, GIB), NodeInfo("n1", True, GIB)]
    assert choose_node(nodes, (), Counter()) == "n1"


def test_storage_choice_takes_most_free_space_among_image_storages() -> None:
    storages = [
        {"storage": "local", "content": "iso,vztmpl", "avail": 900 * GIB, "active": 1},
        {"storage": "fast", "content": "images", "avail": 100 * GIB, "active": 1},
        {"storage": "big", "content": "images,rootdir", "avail": 500 * GIB, "active": 1},
        {"storage": "down", "content": "images", "avail": 999 * GIB, "active": 0},
    ]
    assert choose_storage(storages, ()) == "big"
    assert choose_storage(storages, ("fast", "local")) == "fast"
    with pytest.raises(CapacityError):
        choose_storage(storages, ("local",))


def test_ownership_marks_round_trip_through_pve_tags() -> None:
    owner = Owner(installation="Prod Site", instance="pve-lab")
    request = machine_request("w-1", labels={"talprov.set": "workers", "Team": "a b"})
    tags = encode_tags(ownership_tags(owner, request))
    assert all(t == t.lower() for t in tags)
    assert all(set(t) <= set("abcdefghijklmnopqrstuvwxyz0123456789_+.-") for t in tags)
    marks = decode_tags(";".join(tags))
    assert owned_by(marks, owner)
    assert not owned_by(marks, Owner(installation="Prod Site", instance="other"))
    assert marks["talprov-label-talprov.set"] == "workers"
    # Not tag-safe: carried as a digest, still comparable; the key as the request's.
    assert marks["talprov-label-Team"] == tag_value("a b")
    assert tag_value("a b").startswith("h-")


def test_machine_uuid_is_deterministic_and_distinct() -> None:
    one = vm.machine_uuid("inst", "lab", "w-1")
    assert one == vm.machine_uuid("inst", "lab", "w-1")
    assert one != vm.machine_uuid("inst", "lab", "w-2")
    assert one != vm.machine_uuid("inst", "other", "w-1")
    mac = vm.mac_address(one)
    assert mac.startswith("02:")
    assert mac == vm.mac_address(one)


def test_iso_file_name_is_the_sha256_of_the_url() -> None:
    name = images.iso_file_name("https://f.example/image/x/v1.9.1/nocloud-amd64.iso")
    assert len(name) == 68
    assert name.endswith(".iso")
    assert name != images.iso_file_name("https://f.example/image/x/v1.9.2/nocloud-amd64.iso")


def test_provider_data_defaults_and_limits() -> None:
    data = ProxmoxMachineData()
    assert (data.cores, data.sockets, data.memory, data.disk_size) == (2, 1, 4096, 20)
    assert (data.bridge, data.cpu_type, data.machine) == ("vmbr0", "x86-64-v2-AES", "q35")
    with pytest.raises(ValidationError, match="memory"):
        ProxmoxMachineData(memory=1024)
    with pytest.raises(ValidationError, match="reserved"):
        ProxmoxMachineData(tags=("talprov-request+x",))
    with pytest.raises(ValidationError):
        ProxmoxMachineData.model_validate({"unknown": 1})
    schema = ProxmoxMachineData.model_json_schema()
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name


def test_config_needs_one_way_to_log_in_and_one_way_to_trust() -> None:
    with pytest.raises(ValidationError, match="username"):
        ProxmoxConfig(url="https://pve:8006")
    with pytest.raises(ValidationError, match="go together"):
        ProxmoxConfig(url="https://pve:8006", token_id="a@pve!t")
    with pytest.raises(ValidationError, match="exclude"):
        ProxmoxConfig.model_validate({"url": "https://pve", "username": "root@pam",
                                      "password": "x", "insecure": True, "ca_file": "/ca"})
    with pytest.raises(ValidationError):
        ProxmoxConfig.model_validate({"url": "http://pve", "username": "root@pam", "password": "x"})
    config = ProxmoxConfig.model_validate({"url": "https://pve.example:8443/",
                                           "token_id": "t@pve!x", "token_secret": "s3cret-uuid"})
    assert config.host_port == ("pve.example", 8443)
    assert "s3cret-uuid" not in repr(config)
    assert not config.insecure


@pytest.mark.parametrize(
    ("status", "reason", "errors", "expected"),
    [
        (401, "authentication failure", None, InstanceAccessRefused),
        (403, "Permission check failed (/vms/100, VM.Allocate)", None, AuthError),
        (400, "Parameter verification failed.", {"memory": "type check failed"}, InvalidRequest),
        (500, "unable to create VM 100 - VM 100 already exists on node 'pve1'", None, VmidTaken),
        (500, "Configuration file 'nodes/pve1/qemu-server/1.conf' does not exist", None, NotFound),
        (500, "cluster not ready - no quorum?", None, Transient),
        (595, "No route to host", None, Transient),
    ],
)
def test_translation_of_pve_statuses(
    status: int, reason: str, errors: Any, expected: type[Exception]
) -> None:
    error = translate(ResourceException(status, "x", reason, errors=errors), "do it")
    assert type(error) is expected
    assert "do it" in str(error)
    if expected is InvalidRequest:
        assert isinstance(error, InvalidRequest)
        assert error.field == "memory"


def test_the_docs_describe_every_config_key_and_provider_data_field() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "providers" / "proxmox.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", doc, flags=re.M))
    expected = set(ProxmoxConfig.model_fields) | set(ProxmoxMachineData.model_fields)
    assert expected <= documented, sorted(expected - documented)


def test_the_boot_iso_url_comes_from_the_image_factory(tmp_path: Path) -> None:
    import httpx

    from talprov.talos.factory import ImageFactory
    from talprov.talos.schematic import Schematic

    request = machine_request("iso", extensions=("siderolabs/qemu-guest-agent",))
    schematic_id = Schematic.from_request(request).id()
    posted: list[bytes] = []

    def factory_api(req: httpx.Request) -> httpx.Response:
        posted.append(req.content)
        return httpx.Response(201, json={"id": schematic_id})

    factory = ImageFactory("https://factory.example.test", tmp_path,
                           transport=httpx.MockTransport(factory_api))
    url = images.factory_iso_url(factory, request)
    assert url == (f"https://factory.example.test/image/{schematic_id}/v1.9.1/"
                   "nocloud-amd64.iso")
    assert len(posted) == 1
    assert b"siderolabs/qemu-guest-agent" in posted[0]


def test_user_data_is_the_config_plus_join_documents_when_omni_joins() -> None:
    plain = machine_request("plain")
    named = with_hostname(plain.machine_config.get_secret_value(), "plain", plain.talos_version)
    assert images.render_user_data(plain) == named
    joining = machine_request("joins", join={"api_url": "https://omni.example/?jointoken=t0ken"})
    text = images.render_user_data(joining)
    assert text.startswith(with_hostname(joining.machine_config.get_secret_value(), "joins",
                                         joining.talos_version))
    assert "kind: SideroLinkConfig" in text
    assert "jointoken=t0ken" in text
    broken = machine_request("broken", machine_config="machine: [unclosed\n",
                             join={"api_url": "https://omni.example/?jointoken=t0ken"})
    with pytest.raises(InvalidRequest) as caught:
        images.render_user_data(broken)
    assert caught.value.field == "machine_config"
    assert "unclosed" not in str(caught.value)


def test_a_state_stored_with_the_retired_iso_uploaded_field_still_loads() -> None:
    from talprov.proxmox.state import ProxmoxState

    state = ProxmoxState.model_validate({"iso_uploaded": True, "vmid": 105, "node": "pve1"})
    assert (state.vmid, state.node) == (105, "pve1")
    assert "iso_uploaded" not in state.model_dump()


@pytest.mark.parametrize("status", [402, 405, 409, 410, 412, 415, 422])
def test_an_unlisted_4xx_is_a_permanent_error_naming_the_call_and_status(status: int) -> None:
    error = translate(ResourceException(status, "x", "Method not allowed"), "create VM 101")
    assert isinstance(error, InvalidRequest)
    assert error.permanent
    assert str(error).startswith(f"create VM 101: {status} ")


@pytest.mark.parametrize("status", [408, 425, 429])
def test_timeout_too_early_and_too_many_requests_stay_transient(status: int) -> None:
    error = translate(ResourceException(status, "x", "slow down"), "create VM 101")
    assert type(error) is Transient
    assert str(error).startswith(f"create VM 101: {status} ")
