"""Where a VM goes: which node, and which storage holds its disk.

Pure functions over what one ``/cluster/resources`` call and one node storage
listing returned, so the choice is testable without a cluster and the same
inputs always give the same answer (ties broken by name).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from talprov.providers.errors import CapacityError, InvalidRequest
from talprov.providers.labels import SetGroup
from talprov.proxmox.tags import decode_tags, label_tag_key, tag_values


@dataclass(frozen=True)
class NodeInfo:
    name: str
    online: bool
    free_memory: int


def nodes_from_resources(resources: Iterable[Mapping[str, Any]]) -> list[NodeInfo]:
    """The cluster's nodes from a ``/cluster/resources`` answer."""
    nodes = []
    for item in resources:
        if item.get("type") != "node":
            continue
        free = int(item.get("maxmem") or 0) - int(item.get("mem") or 0)
        nodes.append(NodeInfo(str(item["node"]), item.get("status") == "online", max(free, 0)))
    return nodes


def set_members_per_node(
    resources: Iterable[Mapping[str, Any]], group: SetGroup
) -> Counter[str]:
    """How many VMs of a set each node runs, found by the set's label tag.

    ``group`` is (owner label, set name) as ``talprov.providers.labels.set_group``
    gives it for a request: a cluster's machine set or a request set.
    """
    counts: Counter[str] = Counter()
    if group is None:
        return counts
    # The set name as tagged now or by versions that digested names starting with h-.
    key, values = label_tag_key(group[0]), tag_values(group[1])
    for item in resources:
        if item.get("type") == "qemu" and decode_tags(item.get("tags")).get(key) in values:
            counts[str(item["node"])] += 1
    return counts


def _no_such_node(name: str, nodes: Sequence[NodeInfo]) -> str:
    names = ", ".join(sorted(n.name for n in nodes)) or "none"
    return f"no node {name!r} in the cluster (its nodes: {names})"


def given_node(nodes: Sequence[NodeInfo], name: str) -> str:
    """``name`` (a request's ``provider_data.node``) when the cluster has that node.

    Decided from the cluster's node list, not from PVE's answer to a call on the
    node (a 500 "hostname lookup failed", which reads like a passing fault).
    Raises ``InvalidRequest`` naming the field and the nodes that exist.
    """
    if any(n.name == name for n in nodes):
        return name
    raise InvalidRequest(_no_such_node(name, nodes), field="provider_data.node")


def choose_node(
    nodes: Sequence[NodeInfo], allowed: Sequence[str], set_counts: Mapping[str, int]
) -> str:
    """The online allowed node with the fewest set members, then the most free memory.

    Raises ``InvalidRequest`` when an allowed node does not exist and
    ``CapacityError`` when no allowed node is online.
    """
    unknown = sorted(set(allowed) - {n.name for n in nodes})
    if unknown:
        raise InvalidRequest(_no_such_node(unknown[0], nodes), field="allowed_nodes")
    candidates = [n for n in nodes if n.online and (not allowed or n.name in allowed)]
    if not candidates:
        raise CapacityError("no allowed node is online")
    best = min(candidates, key=lambda n: (set_counts.get(n.name, 0), -n.free_memory, n.name))
    return best.name


def choose_storage(storages: Iterable[Mapping[str, Any]], allowed: Sequence[str]) -> str:
    """The active, enabled storage holding VM images with the most free space.

    ``storages`` is ``GET /nodes/{node}/storage`` output. Raises ``CapacityError``
    when none qualifies.
    """
    candidates = [
        s for s in storages
        if "images" in str(s.get("content", "")).split(",")
        and s.get("active", 1) and s.get("enabled", 1)
        and (not allowed or s.get("storage") in allowed)
    ]
    if not candidates:
        raise CapacityError("no allowed storage for VM images is active on the node")
    best = min(candidates, key=lambda s: (-int(s.get("avail") or 0), str(s["storage"])))
    return str(best["storage"])
