"""A Proxmox VM on DHCP gets its name from its config, since NoCloud cannot give it one.

Talos's NoCloud platform (siderolabs/talos internal/app/machined/pkg/runtime/v1alpha1/
platform/nocloud/nocloud.go, NetworkConfiguration) returns before reading
``local-hostname`` when the seed has no network-config: a VM on DHCP stayed nameless.
"""

from __future__ import annotations

import base64

import pytest

from talprov.providers.types import Owner
from talprov.proxmox import images
from talprov.proxmox.provider import ProxmoxProvider
from talprov.talos.machineconfig import load_documents
from talprov.testing import FakeClock
from tests.driving import context, provision
from tests.emulators.fakepve import FakePveServer
from tests.unit.proxmox.conftest import machine_request


def seed_of(fakepve: FakePveServer, vm_name: str) -> dict[str, str]:
    vm = next(v for v in fakepve.vms() if v["name"] == vm_name)
    storage, _, path = vm["config"]["ide3"].split(",")[0].partition(":iso/")
    return images.read_seed_iso(base64.b64decode(fakepve.control("uploads")[storage][path]))


@pytest.mark.parametrize(("version", "where"), [
    ("v1.9.1", ("machine", "network", "hostname")),
    ("v1.13.9", ("HostnameConfig", "hostname")),
])
def test_a_dhcp_vm_is_named_in_its_user_data(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock,
    version: str, where: tuple[str, ...],
) -> None:
    request = machine_request("db-3", talos_version=version)
    provision(provider, [context(provider, request, owner)], clock)
    seed = seed_of(fakepve, "db-3")
    assert "network-config" not in seed  # DHCP: Talos ignores meta-data's local-hostname
    documents = load_documents(seed["user-data"], "user-data")
    if where[0] == "HostnameConfig":
        (named,) = [d for d in documents if d.get("kind") == "HostnameConfig"]
        assert named["hostname"] == "db-3"
        assert named["auto"] == "off"
    else:
        assert documents[0]["machine"]["network"]["hostname"] == "db-3"
