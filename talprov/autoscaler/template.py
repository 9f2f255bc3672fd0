"""The template node of a node group: what a new machine of the set would look like.

Capacity comes from the machine class: an AWS ``instance_type`` (looked up with
DescribeInstanceTypes), else ``cpu``/``cores``×``sockets`` and ``memory`` (MiB)
in its provider_data as the provider's data model reads it (defaults included).
Labels are the well-known node labels plus the set's ``autoscaling.nodeLabels``;
taints are its ``autoscaling.nodeTaints``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from talprov.autoscaler.wire import message
from talprov.errors import ConfigError
from talprov.providers.types import STORED
from talprov.scaler.models import MachineClass, MachineSetSpec

#: Pods per node the kubelet allows by default (its --max-pods).
DEFAULT_MAX_PODS = 110


@dataclass(frozen=True)
class Capacity:
    cpu: int
    memory_mib: int


def capacity_from_data(data: Any) -> Capacity | None:
    """CPU and memory from a validated provider_data model, or None when it has neither."""
    cpu = getattr(data, "cpu", None)
    if cpu is None and getattr(data, "cores", None) is not None:
        cpu = int(data.cores) * int(getattr(data, "sockets", 1) or 1)
    memory = getattr(data, "memory", None)
    if cpu is None or memory is None:
        return None
    return Capacity(cpu=int(cpu), memory_mib=int(memory))


def aws_capacity(provider: Any, instance_type: str) -> Capacity:
    """An EC2 instance type's vCPUs and memory. Raises ConfigError for an unknown type,
    ProviderError (translated) when EC2 cannot be asked."""
    from talprov.aws.instance_types import describe_instance_type

    info = describe_instance_type(provider.clients.ec2, instance_type)
    if info is None:
        raise ConfigError("provider_data.instance_type", f"unknown instance type {instance_type}")
    return Capacity(cpu=info.vcpus, memory_mib=info.memory_mib)


def class_capacity(provider: Any, machine_class: MachineClass) -> Capacity:
    """The capacity a machine of ``machine_class`` gets on ``provider``.

    Raises ConfigError naming the class when neither an instance type nor cpu and
    memory can be found, ProviderError when the platform cannot be asked.
    """
    where = f"MachineClass {machine_class.name!r}: provider_data"
    raw = dict(machine_class.provider_data)
    instance_type = raw.get("instance_type")
    if getattr(provider, "type_name", "") == "aws" and isinstance(instance_type, str):
        return aws_capacity(provider, instance_type)
    model = getattr(provider, "data_model", None)
    # The class comes from a stored spec: read it under the rules it was stored by.
    data = model.model_validate(raw, context=STORED) if model is not None else None
    found = capacity_from_data(data) if data is not None else None
    if found is None:
        raise ConfigError(where, "needs cpu and memory (or an instance_type on AWS) "
                                 "for the autoscaler's template node")
    return found


def node_labels(set_name: str, group_id: str, machine_set: MachineSetSpec, arch: str,
                zone: str | None) -> dict[str, str]:
    """The labels a new node of the set carries: well-known ones, then the set's own."""
    labels = {
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "kubernetes.io/hostname": f"{set_name}-template",
        "node.talprov.io/group": group_id.replace("/", "."),
    }
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    if machine_set.autoscaling is not None:
        labels.update(machine_set.autoscaling.node_labels)
    return labels


def node_bytes(name: str, labels: Mapping[str, str], machine_set: MachineSetSpec,
               capacity: Capacity) -> bytes:
    """A ready, schedulable ``v1.Node`` as the autoscaler's template, serialised."""
    node = message("k8s.io.api.core.v1.Node")
    node.metadata.name = name
    node.metadata.labels.update(labels)
    if machine_set.autoscaling is not None:
        for taint in machine_set.autoscaling.node_taints:
            node.spec.taints.add(key=taint.key, value=taint.value, effect=taint.effect)
    resources = {"cpu": str(capacity.cpu), "memory": f"{capacity.memory_mib}Mi",
                 "pods": str(DEFAULT_MAX_PODS)}
    for key, quantity in resources.items():
        node.status.capacity[key].string = quantity
        node.status.allocatable[key].string = quantity
    node.status.phase = "Running"
    node.status.conditions.add(type="Ready", status="True")
    data: bytes = node.SerializeToString()
    return data
