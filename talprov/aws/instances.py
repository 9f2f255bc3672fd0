"""RunInstances, DescribeInstances and TerminateInstances for talprov.

Every instance is tied to its request by the member list and launch index it
carries from the moment RunInstances creates it (:mod:`talprov.aws.members`), so
that ONE DescribeInstances listing maps every instance to its request and no
per-instance call follows a launch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from talprov.aws.data import RootVolume, Spot
from talprov.aws.errors import NO_AWS_ANSWER, aws_errors, error_code, translate
from talprov.aws.members import member_tags, request_of
from talprov.providers.errors import CapacityError, InvalidRequest, ProviderError
from talprov.providers.ownership import (
    INSTALLATION_KEY,
    INSTANCE_KEY,
    REQUEST_KEY,
    labels_from_tags,
)
from talprov.providers.types import Machine, MachineState, Owner

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

#: EC2's limit of instances per RunInstances call.
RUN_INSTANCES_LIMIT = 1000
#: EC2's user-data limit, before base64.
USER_DATA_LIMIT = 16 * 1024
#: EC2 accepts at most 200 values per filter.
FILTER_VALUES_LIMIT = 200
LIVE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")
#: ``Machine.extra`` key: every instance claiming the request, when more than one does.
CLAIMANTS_KEY = "claimants"
#: States of an instance a request may still adopt (one shutting down is on its way out).
ADOPTABLE_STATES = ("pending", "running", "stopping", "stopped")
STATE_MAP = {
    "pending": MachineState.PENDING,
    "running": MachineState.RUNNING,
    "stopping": MachineState.STOPPING,
    "stopped": MachineState.STOPPED,
    # shutting-down only ever ends in terminated.
    "shutting-down": MachineState.TERMINATED,
    "terminated": MachineState.TERMINATED,
}
METADATA_OPTIONS: dict[str, Any] = {
    "HttpTokens": "required",
    "HttpPutResponseHopLimit": 1,
    "HttpEndpoint": "enabled",
}


def tags_of(raw: Mapping[str, Any]) -> dict[str, str]:
    """An EC2 resource's tags as a dict."""
    return {str(t["Key"]): str(t.get("Value", "")) for t in raw.get("Tags", []) or []}



def _launch_index(raw: Mapping[str, Any]) -> int:
    return int(raw.get("AmiLaunchIndex", 0) or 0)


def instance_request(raw: Mapping[str, Any]) -> str | None:
    """The one request a DescribeInstances/RunInstances instance belongs to: its
    request tag, else the member at its launch index (never another member of
    its call's list). Pure."""
    return request_of(tags_of(raw), _launch_index(raw))


def machine_from_instance(raw: Mapping[str, Any]) -> Machine:
    """A DescribeInstances/RunInstances instance as a talprov ``Machine``."""
    tags = tags_of(raw)
    ec2_state = str(raw.get("State", {}).get("Name", "unknown"))
    addresses: list[str] = []
    for iface in raw.get("NetworkInterfaces", []) or []:
        for private in iface.get("PrivateIpAddresses", []) or []:
            if private.get("PrivateIpAddress"):
                addresses.append(str(private["PrivateIpAddress"]))
        addresses += [str(a["Ipv6Address"]) for a in iface.get("Ipv6Addresses", []) or []]
    if not addresses and raw.get("PrivateIpAddress"):
        addresses.append(str(raw["PrivateIpAddress"]))
    if raw.get("PublicIpAddress"):
        addresses.append(str(raw["PublicIpAddress"]))
    extra = {
        "ec2_state": ec2_state,
        "instance_type": str(raw.get("InstanceType", "")),
        "availability_zone": str(raw.get("Placement", {}).get("AvailabilityZone", "")),
        "subnet_id": str(raw.get("SubnetId", "") or ""),
        "image_id": str(raw.get("ImageId", "")),
        # "no" while a batch-launched instance still waits for its request tag.
        "request_tag": "yes" if tags.get(REQUEST_KEY) else "no",
    }
    if raw.get("InstanceLifecycle"):
        extra["lifecycle"] = str(raw["InstanceLifecycle"])
    reason = raw.get("StateReason", {}) or {}
    if reason.get("Message"):
        extra["state_reason"] = str(reason["Message"])
    return Machine(
        infra_id=str(raw["InstanceId"]),
        state=STATE_MAP.get(ec2_state, MachineState.UNKNOWN),
        request_id=request_of(tags, _launch_index(raw)),
        addresses=tuple(dict.fromkeys(addresses)),
        labels=labels_from_tags(tags),
        created_at=raw.get("LaunchTime"),
        extra=extra,
    )


def owner_filters(owner: Owner) -> list[Any]:
    """DescribeInstances filters selecting what ``owner`` created."""
    return [
        {"Name": f"tag:{INSTALLATION_KEY}", "Values": [owner.installation]},
        {"Name": f"tag:{INSTANCE_KEY}", "Values": [owner.instance]},
    ]


def describe(ec2: EC2Client, filters: list[Any]) -> Iterator[dict[str, Any]]:
    """Every instance matching ``filters``, over all pages."""
    with aws_errors("DescribeInstances"):
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=filters, PaginationConfig={"PageSize": 1000}
        )
        for page in pages:
            for reservation in page.get("Reservations", []):
                for raw in reservation.get("Instances", []):
                    yield dict(raw)


def list_owned(ec2: EC2Client, owner: Owner) -> list[Machine]:
    """All of ``owner``'s instances that are not terminated: ONE paginated call.

    When two or more instances claim one request, each of them names all the
    claimants (see :func:`with_claimants`).
    """
    filters = [*owner_filters(owner), {"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
    return with_claimants([machine_from_instance(raw) for raw in describe(ec2, filters)])


def with_claimants(machines: Sequence[Machine]) -> list[Machine]:
    """``machines``, where two or more claim one request, each naming every claimant.

    A claimant is an instance of the request that is not on its way out. Its id
    goes, with the others', into ``extra[CLAIMANTS_KEY]`` (comma-separated,
    sorted) of every listed instance of that request, so that whichever of them
    a pass hands a step, the step sees them all. Pure.
    """
    claimants: dict[str, list[str]] = {}
    count: dict[str, int] = {}
    for machine in machines:
        if machine.request_id is None:
            continue
        count[machine.request_id] = count.get(machine.request_id, 0) + 1
        if machine.extra.get("ec2_state") in ADOPTABLE_STATES:
            claimants.setdefault(machine.request_id, []).append(machine.infra_id)
    listed = {rid: ",".join(sorted(ids)) for rid, ids in claimants.items()}
    return [
        replace(m, extra={**m.extra, CLAIMANTS_KEY: listed.get(m.request_id, "")})
        if m.request_id is not None and count[m.request_id] > 1 else m
        for m in machines
    ]


def claimant_ids(machine: Machine) -> set[str]:
    """Every live instance claiming ``machine``'s request, ``machine`` included unless
    it is on its way out (from the listing's :func:`with_claimants`)."""
    listed = machine.extra.get(CLAIMANTS_KEY, "")
    ids = {i for i in listed.split(",") if i}
    if machine.state != MachineState.TERMINATED:
        ids.add(machine.infra_id)
    return ids


def find_for_requests(
    ec2: EC2Client, owner: Owner, request_ids: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    """Instances of ``owner`` that belong to ``request_ids`` and are not going away, by request.

    ONE paginated DescribeInstances of the owner's instances, mapped to requests
    by :func:`request_of` (member lists are packed into tag values, which a tag
    filter cannot select by request). Read-only.
    """
    wanted = set(request_ids)
    filters = [*owner_filters(owner),
               {"Name": "instance-state-name", "Values": list(ADOPTABLE_STATES)}]
    found: dict[str, list[dict[str, Any]]] = {}
    for raw in describe(ec2, filters):
        rid = instance_request(raw)
        if rid in wanted:
            found.setdefault(rid, []).append(raw)
    return found


def describe_ids(ec2: EC2Client, instance_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The instances among ``instance_ids`` that EC2 knows, by id: one call per 200 ids.

    A filter, not ``InstanceIds``, so that one id EC2 does not know yet (it lags
    right after a launch) does not fail the lookup of the others. Read-only.
    """
    out: dict[str, dict[str, Any]] = {}
    ids = sorted(set(instance_ids))
    for start in range(0, len(ids), FILTER_VALUES_LIMIT):
        chunk = ids[start:start + FILTER_VALUES_LIMIT]
        for raw in describe(ec2, [{"Name": "instance-id", "Values": chunk}]):
            out[str(raw["InstanceId"])] = raw
    return out


def describe_one(ec2: EC2Client, instance_id: str) -> dict[str, Any] | None:
    """The instance ``instance_id``, or None when EC2 no longer knows it."""
    try:
        reply = ec2.describe_instances(InstanceIds=[instance_id])
    except ClientError as exc:
        if error_code(exc) == "InvalidInstanceID.NotFound":
            return None
        raise translate(exc, "DescribeInstances") from None
    except NO_AWS_ANSWER as exc:  # unreachable, timed out: no answer at all
        raise translate(exc, "DescribeInstances") from None
    for reservation in reply.get("Reservations", []):
        for raw in reservation.get("Instances", []):
            return dict(raw)
    return None


def terminate(ec2: EC2Client, instance_ids: Sequence[str]) -> dict[str, str]:
    """Terminate ``instance_ids``; their states after the call. Idempotent.

    An id EC2 does not know counts as terminated.
    """
    try:
        reply = ec2.terminate_instances(InstanceIds=list(instance_ids))
    except ClientError as exc:
        if error_code(exc) == "InvalidInstanceID.NotFound":
            return dict.fromkeys(instance_ids, "terminated")
        raise translate(exc, "TerminateInstances") from None
    except NO_AWS_ANSWER as exc:
        raise translate(exc, "TerminateInstances") from None
    return {
        str(change["InstanceId"]): str(change.get("CurrentState", {}).get("Name", ""))
        for change in reply.get("TerminatingInstances", [])
    }


@dataclass(frozen=True)
class LaunchShape:
    """What must be equal for requests to share one RunInstances call."""

    image_id: str
    root_device_name: str
    instance_types: tuple[str, ...]
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    root_volume: RootVolume
    spot: Spot
    iam_instance_profile: str | None
    key_name: str | None
    placement_group: str | None
    tags: tuple[tuple[str, str], ...]
    user_data_sha256: str


@dataclass(frozen=True)
class Member:
    """One request in a launch: its id and the salt that keeps its tokens unique."""

    request_id: str
    nonce: str


@dataclass
class LaunchGroup:
    """Requests that one RunInstances call launches (k = len(members))."""

    shape: LaunchShape
    user_data: str = field(repr=False)
    members: list[Member] = field(default_factory=list)

    def sorted_members(self) -> list[Member]:
        return sorted(self.members, key=lambda m: m.request_id)


def check_user_data(text: str) -> None:
    """Raise ``InvalidRequest`` naming machine_config when EC2 would refuse it."""
    if len(text.encode()) > USER_DATA_LIMIT:
        raise InvalidRequest(
            f"is {len(text.encode())} bytes; EC2 user-data holds at most {USER_DATA_LIMIT}",
            field="machine_config",
        )


def user_data_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _block_devices(shape: LaunchShape) -> list[Any]:
    volume = shape.root_volume
    ebs: dict[str, Any] = {
        "VolumeSize": volume.size,
        "VolumeType": volume.type,
        "DeleteOnTermination": True,
        "Encrypted": volume.encrypted,
    }
    if volume.kms_key_id:
        ebs["KmsKeyId"] = volume.kms_key_id
    if volume.iops is not None:
        ebs["Iops"] = volume.iops
    if volume.throughput is not None:
        ebs["Throughput"] = volume.throughput
    return [{"DeviceName": shape.root_device_name, "Ebs": ebs}]


def run_params(
    group: LaunchGroup, instance_type: str, subnet: str | None, token: str
) -> dict[str, Any]:
    """The RunInstances arguments for ``group`` in one (type, subnet) placement."""
    shape = group.shape
    members = group.sorted_members()
    tags = [{"Key": k, "Value": v} for k, v in shape.tags]
    volume_tags = list(tags)
    if len(members) == 1:
        rid = members[0].request_id
        tags += [{"Key": REQUEST_KEY, "Value": rid}, {"Key": "Name", "Value": rid}]
        volume_tags += [{"Key": REQUEST_KEY, "Value": rid}, {"Key": "Name", "Value": rid}]
    else:
        # No tag names the call: EC2 records it on every instance it launched
        # (ClientToken, reservation), and nothing of talprov's reads it.
        tags += member_tags([m.request_id for m in members])
    params: dict[str, Any] = {
        "ImageId": shape.image_id,
        "InstanceType": instance_type,
        "MinCount": len(members),
        "MaxCount": len(members),
        "UserData": group.user_data,
        "ClientToken": token,
        "MetadataOptions": METADATA_OPTIONS,
        "BlockDeviceMappings": _block_devices(shape),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": volume_tags},
        ],
    }
    if subnet:
        params["SubnetId"] = subnet
    if shape.security_groups:
        params["SecurityGroupIds"] = list(shape.security_groups)
    if shape.iam_instance_profile:
        kind = "Arn" if shape.iam_instance_profile.startswith("arn:") else "Name"
        params["IamInstanceProfile"] = {kind: shape.iam_instance_profile}
    if shape.key_name:
        params["KeyName"] = shape.key_name
    if shape.placement_group:
        params["Placement"] = {"GroupName": shape.placement_group}
    if shape.spot.enabled:
        spot: dict[str, Any] = {"SpotInstanceType": "one-time",
                                "InstanceInterruptionBehavior": "terminate"}
        if shape.spot.max_price:
            spot["MaxPrice"] = shape.spot.max_price
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
    return params


def launch_token(owner: Owner, group: LaunchGroup, instance_type: str, subnet: str | None) -> str:
    """The ClientToken of ``group`` in one placement: same inputs, same token.

    It covers the members (with their per-request nonce, so a request id reused
    after a delete gets fresh tokens) and the placement (so a retry in another
    subnet is not refused as a token reused with other parameters).
    """
    parts = [owner.installation, owner.instance, instance_type, subnet or "-"]
    parts += [f"{m.request_id}:{m.nonce}" for m in group.sorted_members()]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"talprov-{digest[:48]}"


def placements(shape: LaunchShape) -> list[tuple[str, str | None]]:
    """(instance type, subnet) pairs in the order they are tried on capacity errors."""
    subnets: Sequence[str | None] = shape.subnets or (None,)
    return [(t, s) for t in shape.instance_types for s in subnets]


def launch(ec2: EC2Client, owner: Owner, group: LaunchGroup) -> list[tuple[Member, dict[str, Any]]]:
    """Launch ``group`` with one RunInstances, moving on to the next subnet, then the
    next instance type, when EC2 has no capacity.

    Returns (member, instance) pairs, matched by launch index. Raises
    ``CapacityError`` when every placement is full, and other translated errors
    at once. Not idempotent by itself: the caller looks the members up first
    (the ClientToken protects only against AWS-side retries).
    """
    last: ProviderError | None = None
    for instance_type, subnet in placements(group.shape):
        token = launch_token(owner, group, instance_type, subnet)
        try:
            reply = ec2.run_instances(**run_params(group, instance_type, subnet, token))
        except ClientError as exc:
            error = translate(exc, "RunInstances")
            if isinstance(error, CapacityError):
                last = error
                continue
            raise error from None
        except NO_AWS_ANSWER as exc:
            # No answer (timed out, connection lost): the launch may have happened;
            # the retry sends the same ClientToken, so EC2 answers with the same
            # instances instead of launching again.
            raise translate(exc, "RunInstances") from None
        instances = sorted(reply.get("Instances", []), key=_launch_index)
        members = group.sorted_members()
        return [(members[_launch_index(raw)], dict(raw)) for raw in instances
                if _launch_index(raw) < len(members)]
    assert last is not None
    raise last
