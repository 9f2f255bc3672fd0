"""Turning requests that need an instance into as few RunInstances calls as is safe.

Why this design (and not the alternatives):

* EC2 user-data is one value per RunInstances call, and Talos machine configs
  often *are* identical (every worker of a cluster gets the same worker.yaml).
  Requests of one shape (image, type, subnet, security groups, volume, spot,
  profile, tags) **and** one machine config are launched together with
  MinCount = MaxCount = k. EC2 then launches all k or none, and its
  RunInstances rate limit (a few calls per second) is no longer the bottleneck
  for large sets.
* Requests with their own config (control planes, per-node patches) get one
  call each, issued concurrently from a small thread pool (boto3 clients are
  thread-safe).
* CreateFleet was not used: it takes user-data only through launch templates,
  so distinct configs would need a template version per request.

* A batch is as large as EC2 allows (1,000 instances per call, ``max_batch``)
  and as its member list fits in the tags the shape leaves free: the ids are
  packed into a few tag values, a handful of characters per id of one set.

Crash safety rests on the member list and launch index written at launch (see
:mod:`talprov.aws.members`) and on the caller having looked every request up
(the pass's listing) before calling this. Nothing is written per instance after
the launch, so nothing per instance sits on the critical path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from talprov.aws.client import AwsClients
from talprov.aws.config import AwsConfig
from talprov.aws.data import AwsData
from talprov.aws.instances import (
    RUN_INSTANCES_LIMIT,
    LaunchGroup,
    LaunchShape,
    Member,
    check_user_data,
    launch,
    user_data_digest,
)
from talprov.aws.members import chunk_members, member_capacity
from talprov.daemon_pool import DaemonPool
from talprov.providers.errors import ProviderError
from talprov.providers.ownership import REQUEST_KEY, ownership_tags
from talprov.providers.protocol import StepContext
from talprov.providers.types import MachineRequest, Owner

Adopt = Callable[..., None]


def subnet_order(subnets: Sequence[str], request_id: str) -> tuple[str, ...]:
    """``subnets`` rotated by a hash of the request id, so that requests spread over them.

    The rest of the list is the fallback order on capacity errors.
    """
    if not subnets:
        return ()
    start = int(hashlib.sha256(request_id.encode()).hexdigest(), 16) % len(subnets)
    return (*subnets[start:], *subnets[:start])


def shape_of(ctx: StepContext[Any, Any], owner: Owner, user_data: str) -> LaunchShape:
    """The launch shape of one request. Raises ``InvalidRequest`` for unusable input."""
    data: AwsData = ctx.data
    state = ctx.state
    check_user_data(user_data)
    tags = {k: v for k, v in ownership_tags(owner, ctx.request).items() if k != REQUEST_KEY}
    tags.update(data.tags)
    return LaunchShape(
        image_id=str(state.image_id),
        root_device_name=state.root_device_name or "/dev/xvda",
        instance_types=tuple(state.instance_types),
        subnets=subnet_order(data.subnets, ctx.request.id),
        security_groups=tuple(data.security_groups),
        root_volume=data.root_volume,
        spot=data.spot,
        iam_instance_profile=data.iam_instance_profile,
        key_name=data.key_name,
        placement_group=data.placement_group,
        tags=tuple(sorted(tags.items())),
        user_data_sha256=user_data_digest(user_data),
    )


class Launcher:
    """Groups requests into launches and runs them concurrently."""

    def __init__(self, clients: AwsClients, config: AwsConfig) -> None:
        self.clients = clients
        self.config = config

    def batches(self, shape: LaunchShape, request_ids: Sequence[str]) -> list[list[str]]:
        """``request_ids`` (sorted) cut into launches whose member lists fit the tags
        ``shape`` leaves free."""
        limit = min(self.config.max_batch, RUN_INSTANCES_LIMIT)
        return chunk_members(request_ids, limit=limit,
                             capacity=member_capacity(len(shape.tags)))

    def plan(
        self, ctxs: Sequence[StepContext[Any, Any]], owner: Owner,
        user_data: Callable[[MachineRequest], str],
    ) -> tuple[list[tuple[LaunchGroup, list[int]]], dict[int, ProviderError]]:
        """The launch groups (with the positions of their contexts) and per-request errors."""
        errors: dict[int, ProviderError] = {}
        by_shape: dict[LaunchShape, tuple[str, list[int]]] = {}
        for index, ctx in enumerate(ctxs):
            try:
                text = user_data(ctx.request)
                shape = shape_of(ctx, owner, text)
            except ProviderError as exc:
                errors[index] = exc
                continue
            by_shape.setdefault(shape, (text, []))[1].append(index)
        groups: list[tuple[LaunchGroup, list[int]]] = []
        for shape, (text, indexes) in by_shape.items():
            by_id = {ctxs[i].request.id: i for i in indexes}
            for chunk in self.batches(shape, sorted(by_id)):
                positions = [by_id[rid] for rid in chunk]
                members = [Member(rid, ctxs[by_id[rid]].state.nonce) for rid in chunk]
                groups.append((LaunchGroup(shape, text, members), positions))
        return groups, errors

    def launch_all(
        self, ctxs: Sequence[StepContext[Any, Any]], owner: Owner,
        user_data: Callable[[MachineRequest], str], adopt: Adopt,
    ) -> list[ProviderError | None]:
        """Launch an instance for each of ``ctxs`` (which were looked up and not found).

        ``adopt(ctx, instance_id, tagged=...)`` records each new instance in its
        request's state as soon as RunInstances returns (``tagged``: whether it
        carries its request tag, i.e. was launched alone). Returns, per context, the
        error that stopped it or None. Never raises ProviderError.
        """
        groups, errors = self.plan(ctxs, owner, user_data)
        ec2 = self.clients.ec2  # built here, before the worker threads share it

        def run(group: LaunchGroup, indexes: list[int]) -> None:
            by_id = {ctxs[i].request.id: i for i in indexes}
            try:
                launched = launch(ec2, owner, group)
            except ProviderError as exc:
                for i in indexes:
                    errors[i] = exc
                return
            single = len(group.members) == 1
            for member, raw in launched:
                adopt(ctxs[by_id[member.request_id]], str(raw["InstanceId"]), tagged=single)

        workers = max(1, min(self.config.launch_concurrency, len(groups)))
        with DaemonPool(workers, "talprov-launch") as pool:
            list(pool.map(lambda g: run(*g), groups))
        return [errors.get(i) for i in range(len(ctxs))]
