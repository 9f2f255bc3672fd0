"""The AWS ``provider_data`` of a MachineRequest (exported as JSON Schema).

Everything here describes the *shape* of a machine. Requests whose provider_data,
image and machine config are equal can be launched by one RunInstances call.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# EC2 accepts at most 50 tags per resource; talprov itself needs a handful.
MAX_USER_TAGS = 20

#: Talos needs 2 vCPUs and 2 GiB; these are the smallest such types per arch.
DEFAULT_INSTANCE_TYPES = {"amd64": "t3.small", "arm64": "t4g.small"}


class RootVolume(BaseModel):
    """The root EBS volume (the Talos system disk)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    size: int = Field(default=20, ge=8, le=16384, description="Size in GiB.")
    type: Literal["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"] = Field(
        default="gp3", description="EBS volume type."
    )
    iops: int | None = Field(
        default=None, ge=100, description="Provisioned IOPS (gp3, io1, io2 only)."
    )
    throughput: int | None = Field(
        default=None, ge=125, le=1000, description="Throughput in MiB/s (gp3 only)."
    )
    encrypted: bool = Field(default=True, description="Encrypt the volume.")
    kms_key_id: str | None = Field(
        default=None,
        description="KMS key (id, alias or ARN) for encryption; unset = the account's "
        "default EBS key.",
    )

    @model_validator(mode="after")
    def _check_type_options(self) -> RootVolume:
        if self.iops is not None and self.type not in ("gp3", "io1", "io2"):
            raise ValueError("iops applies only to gp3, io1 and io2 volumes")
        if self.throughput is not None and self.type != "gp3":
            raise ValueError("throughput applies only to gp3 volumes")
        if self.kms_key_id is not None and not self.encrypted:
            raise ValueError("kms_key_id needs encrypted: true")
        return self


class Spot(BaseModel):
    """Spot instead of on-demand capacity."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = Field(default=False, description="Launch as a one-time spot instance.")
    max_price: str | None = Field(
        default=None,
        pattern=r"^\d+(\.\d+)?$",
        description="Highest hourly price in USD; unset = the on-demand price.",
    )


class AwsData(BaseModel):
    """Per-request machine shape on AWS."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    instance_type: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9-]+\.[a-z0-9-]+$",
        description="EC2 instance type, e.g. m6i.large. Set this, or cpu and memory; with "
        "neither, t3.small (amd64) or t4g.small (arm64).",
    )
    cpu: int | None = Field(
        default=None, ge=1, le=448,
        description="Minimum vCPUs (with memory, instead of instance_type).",
    )
    memory: int | None = Field(
        default=None,
        ge=512,
        description="Minimum memory in MiB (with cpu). The smallest current-generation type "
        "with at least this much is chosen.",
    )
    subnets: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Subnet ids to spread over; on a capacity error the next one is tried. "
        "Empty = the default VPC's choice.",
    )
    security_groups: list[str] = Field(
        default_factory=list, description="Security group ids (sg-...) for the primary interface."
    )
    root_volume: RootVolume = Field(default_factory=RootVolume, description="Root EBS volume.")
    iam_instance_profile: str | None = Field(
        default=None, description="Instance profile name or ARN."
    )
    key_name: str | None = Field(
        default=None, description="EC2 key pair name (Talos has no SSH; rarely useful)."
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_USER_TAGS,
        description="Extra tags on the instance and its volumes.",
    )
    spot: Spot = Field(default_factory=Spot, description="Spot settings.")
    placement_group: str | None = Field(default=None, description="Placement group name.")
    ami: str | None = Field(
        default=None,
        pattern=r"^ami-[0-9a-f]+$",
        description="Use this AMI instead of the one talprov picks for the Talos version.",
    )

    @model_validator(mode="after")
    def _check_size(self) -> AwsData:
        if (self.cpu is None) != (self.memory is None):
            raise ValueError("set cpu and memory together")
        if self.instance_type is not None and (self.cpu is not None or self.memory is not None):
            raise ValueError("set either instance_type or cpu/memory, not both")
        for key in self.tags:
            if key.lower().startswith(("aws:", "talprov-")) or key == "Name":
                raise ValueError(f"tag {key!r} is reserved")
        return self
