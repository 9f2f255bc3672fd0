"""providerIDs per platform, as their cloud controllers set them on nodes."""

from __future__ import annotations

import pytest

from talprov.autoscaler.groups import GroupError, split_group_id
from talprov.autoscaler.providerids import MachineIds, matches, provider_id

UUID = "4201794A-F26B-8914-D95A-EDEB7ECC4A8F"


@pytest.mark.parametrize(("machine", "expected"), [
    (MachineIds("r1", "aws", "aws-dev", "i-0abc", None, "eu-west-1b"),
     "aws:///eu-west-1b/i-0abc"),
    (MachineIds("r1", "aws", "aws-dev", "i-0abc", None, None), "talprov://r1"),
    (MachineIds("r1", "openstack", "os", "8a5b1c2d-0000-4000-8000-000000000001", None, None),
     "openstack:///8a5b1c2d-0000-4000-8000-000000000001"),
    (MachineIds("r1", "vmware", "vc", "vm-42", UUID, None), f"vsphere://{UUID.lower()}"),
    (MachineIds("r1", "proxmox", "pve", "104", None, None), "proxmox://pve/104"),
    (MachineIds("r1", "baremetal", "rack", "bmc-1", None, None), "talprov://r1"),
    (MachineIds("r1", "proxmox", "pve", None, None, None), "talprov://r1"),
])
def test_provider_ids(machine: MachineIds, expected: str) -> None:
    assert provider_id(machine, {}) == expected
    assert matches(expected, machine, {})


def test_matching_rules() -> None:
    vsphere = MachineIds("r1", "vmware", "vc", "vm-42", UUID, None)
    assert matches(f"vsphere://{UUID}", vsphere, {})  # upper-case from the node
    aws = MachineIds("r2", "aws", "aws-dev", "i-0abc", None, None)
    assert matches("aws:///eu-west-1a/i-0abc", aws, {})  # zone not yet seen
    assert not matches("aws:///eu-west-1a/i-0abd", aws, {})
    assert not matches("", aws, {})
    pve = MachineIds("r3", "proxmox", "pve", "104", None, None)
    assert provider_id(pve, {"pve": "cluster-1"}) == "proxmox://cluster-1/104"
    assert not matches("proxmox://pve/104", pve, {"pve": "cluster-1"})


@pytest.mark.parametrize("bad", ["demo", "/workers", "demo/", "demo/a/b"])
def test_group_ids_are_cluster_slash_set(bad: str) -> None:
    assert split_group_id("demo/workers") == ("demo", "workers")
    with pytest.raises(GroupError, match="expected <cluster>/<set>") as info:
        split_group_id(bad)
    assert info.value.code == "INVALID_ARGUMENT"
