"""Label values on Proxmox tags: what a listing reads back, and what the scaler finds by it.

A tag carries a value that is not tag-safe as ``h-<digest>``; versions before
this one digested every value starting with ``h-`` too. A cluster may be named
``h-lab``: its VMs listed ``talprov.cluster`` as the digest, the scaler's orphan
check (listed cluster label == the cluster's name) never matched, and a VM
whose request was gone was never found, never removed.

Tag-safe values are now written as themselves; VMs tagged with the digest
before are still matched by hashing the expected value. Values that cannot be
written as themselves (label values with upper-case letters: a failure
domain's name) still list as digests, and whatever compares them hashes the
expected value.
"""

from __future__ import annotations

import hashlib
import re
from itertools import count
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from talprov.providers.labels import LABEL_CLUSTER, LABEL_DOMAIN, LABEL_SET
from talprov.providers.ownership import (
    LABEL_PREFIX,
    label_digest,
    listed_label_is,
    ownership_tags,
)
from talprov.providers.protocol import Provider, Runtime
from talprov.providers.types import Owner
from talprov.proxmox.placement import set_members_per_node
from talprov.proxmox.provider import ProxmoxProvider
from talprov.proxmox.tags import (
    SEPARATOR,
    decode_tags,
    encode_tags,
    label_tag_key,
    mark_key,
    owned_by,
    tag_key,
    tag_value,
)
from talprov.reconcile.reconciler import ProviderHandle
from talprov.scaler.apply import Scaler
from talprov.scaler.spec import load_spec_file
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.driving import context, provision
from tests.emulators.fakepve import FakePveServer
from tests.unit.proxmox.conftest import machine_request, password_config

WORKER = "version: v1alpha1\nmachine:\n  type: worker\n  token: canary-1f0e\n"


def _tags_as_before(marks: dict[str, str]) -> str:
    """Tags as versions before this one wrote them: a value digested when it was
    not tag-safe or started with ``h-`` (request ids here never do)."""
    out = []
    for key, value in marks.items():
        written = value
        if not re.fullmatch(r"[a-z0-9_.-]+", value) or value.startswith("h-"):
            written = "h-" + hashlib.sha256(value.encode()).hexdigest()[:24]
        out.append(f"{key.lower()}{SEPARATOR}{written}")
    return ";".join(out)


@pytest.mark.parametrize("value", ["h-lab", "h", "lab", "a.b_c-d", "h-" + "0" * 24])
def test_a_tag_safe_value_is_tagged_as_itself(value: str) -> None:
    assert tag_value(value) == value


@pytest.mark.parametrize("value", ["Zone-A", "", "a/b", "a b", "a:b"])
def test_a_value_that_is_not_tag_safe_is_tagged_as_its_digest(value: str) -> None:
    assert tag_value(value) == label_digest(value)
    assert listed_label_is(label_digest(value), value)
    assert not listed_label_is(label_digest(value), value + "x")


def test_owned_by_recognises_installation_and_instance_digested_before() -> None:
    owner = Owner(installation="h-talprov", instance="h-pve")
    marks = ownership_tags(owner, machine_request("w-1"))
    assert owned_by(decode_tags(encode_tags(marks)), owner)
    assert owned_by(decode_tags(_tags_as_before(marks)), owner)
    assert not owned_by(decode_tags(encode_tags(marks)), Owner("h-talprov", "pve"))


@pytest.mark.parametrize("before", [False, True])
def test_set_members_are_counted_on_vms_tagged_now_and_before(before: bool) -> None:
    request = machine_request("w-1", labels={LABEL_SET: "h-workers"})
    marks = ownership_tags(Owner("i", "lab"), request)
    tags = _tags_as_before(marks) if before else ";".join(encode_tags(marks))
    resources = [{"type": "qemu", "node": "pve1", "vmid": 100, "tags": tags}]
    assert decode_tags(tags)[label_tag_key(LABEL_SET)] == (
        label_digest("h-workers") if before else "h-workers")
    assert set_members_per_node(resources, (LABEL_SET, "h-workers")) == {"pve1": 1}


# -- label keys ------------------------------------------------------------------------
# PVE tags are lower case: versions before lower-cased a label key (`Role` listed
# as `role`, and with a `role` beside it one of the two values under one key) and
# left a key with '/' out of the tags (not listed at all).

CASED = {"Role": "worker", "role": "other", "topology.kubernetes.io/Zone": "zone-a",
         "example.com/team": "platform", "a_B.c-D9": "x"}
#: PVE's rule for a tag (pve-common's PVE_TAG_RE), lower case as PVE stores it.
_PVE_TAG = re.compile(r"[a-z0-9_][a-z0-9_+.-]*")


@pytest.mark.parametrize("key", sorted(CASED))
def test_a_label_key_is_tagged_in_lower_case_and_read_back_as_itself(key: str) -> None:
    (tag,) = encode_tags({LABEL_PREFIX + key: CASED[key]})
    assert _PVE_TAG.fullmatch(tag), tag
    assert decode_tags(tag) == {LABEL_PREFIX + key: CASED[key]}


def test_keys_differing_in_case_only_are_two_tags() -> None:
    marks = {LABEL_PREFIX + "Role": "worker", LABEL_PREFIX + "role": "other"}
    tags = encode_tags(marks)
    assert len({t.rpartition(SEPARATOR)[0] for t in tags}) == 2
    assert decode_tags(";".join(sorted(tags))) == marks


def test_a_key_lower_cased_before_reads_as_it_did() -> None:
    assert decode_tags("talprov-label-role+worker;talprov-label-team+h-" + "0" * 24) == {
        "talprov-label-role": "worker", "talprov-label-team": "h-" + "0" * 24}


@pytest.mark.parametrize("tagged", ["talprov-label-x+", "talprov-label-+9x", "talprov-+-a"])
def test_a_plus_no_key_character_was_written_as_is_no_mark(tagged: str) -> None:
    assert mark_key(tagged) is None
    assert decode_tags(f"{tagged}+v") == {}


def test_a_key_no_tag_can_carry_is_left_to_the_notes() -> None:
    assert tag_key("talprov-label-a b") is None
    assert encode_tags({"talprov-label-a b": "v", "talprov-label-ok": "v"}) == [
        "talprov-label-ok+v"]


def test_a_vm_lists_every_label_under_the_requests_own_key(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock,
) -> None:
    labels = {LABEL_SET: "workers", **CASED, "team": "Platform"}
    provision(provider, [context(provider, machine_request("w-1", labels=labels), owner)],
              clock)

    (listed,) = provider.list_machines(owner)
    assert listed.labels == {**labels, "team": label_digest("Platform")}
    # Set spreading still finds the set's members by their tag.
    resources = [{"type": "qemu", "node": vm["node"], "vmid": vm["vmid"],
                  "tags": vm["config"]["tags"]} for vm in fakepve.vms()]
    assert set_members_per_node(resources, (LABEL_SET, "workers")) == {
        str(resources[0]["node"]): 1}


# -- the scaler on fakepve ----------------------------------------------------------

_VMIDS = count(900)


def _scaler(fakepve: FakePveServer, tmp_path: Path, runtime: Runtime, cluster: str,
            domains: list[str]) -> Scaler:
    provider = ProxmoxProvider("lab", password_config(fakepve), runtime,
                               iso_url=lambda request: "https://f.example.test/x.iso")
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    scaler = Scaler(store, {"lab": ProviderHandle(cast(Provider, provider))}, runtime)
    machine_class: dict[str, Any] = {"kind": "MachineClass", "name": "vm", "provider": "lab"}
    if domains:
        machine_class["failureDomains"] = domains
    docs = [
        {"kind": "Cluster", "name": cluster, "talos": {"version": "v1.9.1"}},
        machine_class,
        {"kind": "Workers", "name": "h-workers", "machineClass": {"name": "vm", "size": 1},
         "config": {"inline": WORKER}},
    ]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump_all(docs))
    scaler.record(load_spec_file(tmp_path / "spec.yaml"))
    return scaler


def _orphan_vm(fakepve: FakePveServer, runtime: Runtime, labels: dict[str, str], *,
               before: bool) -> int:
    """A VM tagged by talprov for a request the store does not have."""
    request = machine_request("gone-1", labels=labels)
    marks = ownership_tags(Owner(runtime.installation, "lab"), request)
    tags = _tags_as_before(marks) if before else ";".join(encode_tags(marks))
    vmid = next(_VMIDS)
    fakepve.control("add_vm", vmid=vmid, name="gone-1", config={"tags": tags})
    return vmid


@pytest.mark.parametrize("before", [False, True])
@pytest.mark.parametrize("domain", [None, "Zone-A"])
def test_an_orphan_of_an_h_named_cluster_is_found(
    fakepve: FakePveServer, tmp_path: Path, runtime: Runtime, before: bool, domain: str | None,
) -> None:
    scaler = _scaler(fakepve, tmp_path, runtime, "h-lab", [domain] if domain else [])
    labels = {LABEL_CLUSTER: "h-lab", LABEL_SET: "h-workers"}
    if domain is not None:
        labels[LABEL_DOMAIN] = domain
    vmid = _orphan_vm(fakepve, runtime, labels, before=before)
    state = scaler.state("h-lab")
    assert state is not None

    _, orphans = scaler.observe(state)

    assert [(o.infra_id, o.request_id, o.set_name, o.domain) for o in orphans] == [
        (str(vmid), "gone-1", "h-workers", domain)]


def test_another_clusters_vm_is_no_orphan(
    fakepve: FakePveServer, tmp_path: Path, runtime: Runtime,
) -> None:
    scaler = _scaler(fakepve, tmp_path, runtime, "h-lab", [])
    _orphan_vm(fakepve, runtime, {LABEL_CLUSTER: "lab", LABEL_SET: "h-workers"}, before=False)
    _orphan_vm(fakepve, runtime, {LABEL_CLUSTER: "h-other"}, before=True)
    state = scaler.state("h-lab")
    assert state is not None

    assert scaler.observe(state)[1] == []


def test_a_renamed_vm_of_a_live_h_request_tagged_before_is_no_orphan(
    fakepve: FakePveServer, tmp_path: Path, runtime: Runtime,
) -> None:
    """Review: an old VM of a live request `h-web-1` lists its request tag as the
    digest once renamed in PVE (the name no longer tells the id); now that its
    digested cluster label matches `h-lab`, it was planned for deletion as an
    orphan after the grace period. A digested request id of a known request is
    that request's."""
    scaler = _scaler(fakepve, tmp_path, runtime, "h-lab", [])
    labels = {LABEL_CLUSTER: "h-lab", LABEL_SET: "h-workers"}
    scaler.store.create_request(machine_request("h-web-1", labels=labels))
    marks = ownership_tags(Owner(runtime.installation, "lab"),
                           machine_request("h-web-1", labels=labels))
    fakepve.control("add_vm", vmid=next(_VMIDS), name="renamed-by-hand",
                    config={"tags": _tags_as_before(marks)})
    state = scaler.state("h-lab")
    assert state is not None

    assert scaler.observe(state)[1] == []
