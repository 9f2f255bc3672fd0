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

Crash safety rests on the member tags and launch index written at launch (see
:mod:`talprov.aws.instances`), not on the later CreateTags, and on the caller
looking every request up before calling this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from talprov.aws.client import AwsClients
from talprov.aws.config import AwsConfig
from talprov.aws.data import AwsData
from talprov.aws.instances import (
    LaunchGroup,
    LaunchShape,
    Member,
    check_user_data,
    launch,
    tag_instance,
    user_data_digest,
)
from talprov.providers.errors import ProviderError
from talprov.providers.ownership import REQUEST_KEY, ownership_tags
from talprov.providers.protocol import StepContext
from talprov.providers.types import MachineRequest, Owner

#: EC2's tag limit per resource.
MAX_TAGS = 50
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

    def batch_limit(self, shape: LaunchShape) -> int:
        """Most members one call may carry: each costs a tag on every instance."""
        # Two tags stay free for the request and Name tags added after launch.
        return max(1, min(self.config.max_batch, MAX_TAGS - len(shape.tags) - 2))

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
            ordered = sorted(indexes, key=lambda i: ctxs[i].request.id)
            limit = self.batch_limit(shape)
            for start in range(0, len(ordered), limit):
                chunk = ordered[start:start + limit]
                members = [Member(ctxs[i].request.id, ctxs[i].state.nonce) for i in chunk]
                groups.append((LaunchGroup(shape, text, members), chunk))
        return groups, errors

    def launch_all(
        self, ctxs: Sequence[StepContext[Any, Any]], owner: Owner,
        user_data: Callable[[MachineRequest], str], adopt: Adopt,
    ) -> list[ProviderError | None]:
        """Launch an instance for each of ``ctxs`` (which were looked up and not found).

        ``adopt(ctx, instance_id, tagged=...)`` records each new instance in its
        request's state as soon as RunInstances returns. Returns, per context, the
        error that stopped it or None. Never raises ProviderError.
        """
        groups, errors = self.plan(ctxs, owner, user_data)
        ec2 = self.clients.ec2  # built here, before the worker threads share it
        to_tag: list[tuple[StepContext[Any, Any], str]] = []

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
                ctx = ctxs[by_id[member.request_id]]
                adopt(ctx, str(raw["InstanceId"]), tagged=single)
                if not single:
                    to_tag.append((ctx, str(raw["InstanceId"])))

        workers = max(1, min(self.config.launch_concurrency, len(groups)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda g: run(*g), groups))
        # Batch members get their request and Name tags now, one call each (the
        # values differ per instance), side by side. A failure here is harmless
        # (the member tags identify them); wait-running retries it.
        if to_tag:
            taggers = max(1, min(self.config.launch_concurrency, len(to_tag)))
            with ThreadPoolExecutor(max_workers=taggers) as pool:
                list(pool.map(lambda item: self._tag(*item), list(to_tag)))
        return [errors.get(i) for i in range(len(ctxs))]

    def _tag(self, ctx: StepContext[Any, Any], instance_id: str) -> None:
        try:
            tag_instance(self.clients.ec2, instance_id, ctx.request.id)
            ctx.state.tagged = True
        except ProviderError:
            ctx.event(f"instance {instance_id}: request tag not written yet")
