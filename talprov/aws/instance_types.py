"""Choosing an instance type from a cpu + memory request.

DescribeInstanceTypes carries no prices, so "cheapest" is approximated by the
order EC2's price lists follow within a generation: fewest vCPUs, then least
memory, then burstable types, then AMD processors (priced below Intel for the
same size), then the name for a stable tie-break. The answer is cached per
provider instance, so many requests of one size cost one listing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from talprov.aws.errors import aws_errors, error_code
from talprov.providers.errors import InvalidRequest

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

#: vCPU counts that EC2 types come in; filtering on a short list of them keeps
#: the listing to the relevant sizes instead of all ~900 types.
VCPU_COUNTS = (1, 2, 4, 6, 8, 12, 16, 20, 24, 32, 36, 40, 48, 64, 72, 80, 96, 128, 144, 192,
               224, 256, 288, 384, 448)
AWS_ARCH = {"amd64": "x86_64", "arm64": "arm64"}
#: How many matching types to keep as fallbacks for capacity errors.
CANDIDATES = 3


@dataclass(frozen=True)
class TypeInfo:
    """The facts about an instance type that the choice depends on."""

    name: str
    vcpus: int
    memory_mib: int
    burstable: bool
    manufacturer: str

    def rank(self) -> tuple[int, int, int, int, str]:
        return (self.vcpus, self.memory_mib, 0 if self.burstable else 1,
                0 if self.manufacturer == "AMD" else 1, self.name)


def _type_info(raw: Any) -> TypeInfo:
    return TypeInfo(
        name=str(raw["InstanceType"]),
        vcpus=int(raw.get("VCpuInfo", {}).get("DefaultVCpus", 0)),
        memory_mib=int(raw.get("MemoryInfo", {}).get("SizeInMiB", 0)),
        burstable=bool(raw.get("BurstablePerformanceSupported", False)),
        manufacturer=str(raw.get("ProcessorInfo", {}).get("Manufacturer", "")),
    )


class InstanceTypeChooser:
    """Resolves (cpu, memory, arch, spot) to a short list of instance types, cached."""

    def __init__(self, ec2: EC2Client) -> None:
        self._ec2 = ec2
        self._cache: dict[tuple[int, int, str, bool], tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def choose(self, cpu: int, memory_mib: int, arch: str, spot: bool) -> tuple[str, ...]:
        """The best few types with at least ``cpu`` vCPUs and ``memory_mib`` MiB, best first.

        Raises ``InvalidRequest`` naming provider_data.cpu when nothing matches,
        and translated AWS errors from DescribeInstanceTypes. Idempotent (cached).
        """
        key = (cpu, memory_mib, arch, spot)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            found = self._search(cpu, memory_mib, arch, spot)
            self._cache[key] = found
            return found

    def _search(self, cpu: int, memory_mib: int, arch: str, spot: bool) -> tuple[str, ...]:
        larger = [c for c in VCPU_COUNTS if c >= cpu]
        # Most requests are satisfied by types of up to 4x the asked vCPUs; look
        # there first, and at the rest only when memory forces a bigger type.
        tiers = [[c for c in larger if c <= 4 * cpu], [c for c in larger if c > 4 * cpu]]
        for tier in tiers:
            if not tier:
                continue
            matches = [
                t for t in self._list(tier, arch, spot)
                if t.vcpus >= cpu and t.memory_mib >= memory_mib
            ]
            if matches:
                matches.sort(key=TypeInfo.rank)
                return tuple(t.name for t in matches[:CANDIDATES])
        raise InvalidRequest(
            f"no current-generation {arch} instance type has {cpu} vCPUs and {memory_mib} MiB",
            field="provider_data.cpu",
        )

    def _list(self, vcpus: list[int], arch: str, spot: bool) -> list[TypeInfo]:
        filters: list[Any] = [
            {"Name": "current-generation", "Values": ["true"]},
            {"Name": "bare-metal", "Values": ["false"]},
            {"Name": "processor-info.supported-architecture", "Values": [AWS_ARCH[arch]]},
            {"Name": "supported-usage-class", "Values": ["spot" if spot else "on-demand"]},
            {"Name": "vcpu-info.default-vcpus", "Values": [str(c) for c in vcpus]},
        ]
        found: list[TypeInfo] = []
        with aws_errors("DescribeInstanceTypes"):
            pages = self._ec2.get_paginator("describe_instance_types").paginate(
                Filters=filters, PaginationConfig={"PageSize": 100}
            )
            for page in pages:
                self.calls += 1
                found.extend(_type_info(raw) for raw in page.get("InstanceTypes", []))
        return found


def describe_instance_type(ec2: EC2Client, name: str) -> TypeInfo | None:
    """vCPUs and memory of one instance type, or None when EC2 does not know it.

    Raises translated ProviderErrors for other failures. Read-only; idempotent.
    """
    with aws_errors("DescribeInstanceTypes"):
        try:
            found = ec2.describe_instance_types(InstanceTypes=[name])  # type: ignore[list-item]
        except ClientError as exc:
            if error_code(exc) == "InvalidInstanceType":
                return None
            raise
    types = found.get("InstanceTypes", [])
    return _type_info(types[0]) if types else None
