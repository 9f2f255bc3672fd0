"""The AWS provider: Talos machines as EC2 instances.

Steps (each idempotent, see docs/architecture.md):

1. ``resolve-image`` — the AMI for the request's Talos version, arch and
   schematic (official, or imported once per schematic) and the instance type;
   it needs no listing, so it overlaps the pass's DescribeInstances.
2. ``ensure-instance`` — the request's instance as the pass's listing shows it
   (mapped to requests by tag, batch member list and launch index), else launch
   it; when several instances claim it, one is adopted and the others terminated.
   Found again (``Step.found_again``): its outcome is stored with wait-running's.
   ``run_batch`` launches requests of one shape and one machine config with a
   single RunInstances (see :mod:`talprov.aws.members` for why that is crash
   safe); requests that cannot share a call get one call each, in parallel.
3. ``wait-running`` — from the pass's single listing; instances the listing does
   not show yet (launched in this pass) are looked at right away, all with one
   DescribeInstances, then again after a backoff that grows while EC2 answers
   ``pending``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

from pydantic import BaseModel

from talprov.aws.archs import instance_type_arch
from talprov.aws.client import AwsClients
from talprov.aws.config import AwsConfig
from talprov.aws.data import AwsData
from talprov.aws.errors import InstanceLost, aws_errors, not_an_aws_answer
from talprov.aws.instances import (
    claimant_ids,
    describe_ids,
    describe_one,
    find_for_requests,
    list_owned,
    machine_from_instance,
    tags_of,
    terminate,
)
from talprov.aws.launching import Launcher
from talprov.aws.resolving import ImageResolver
from talprov.aws.second_instances import remove_second
from talprov.aws.state import AwsState
from talprov.providers.errors import InvalidRequest, ProviderError, naming_endpoint
from talprov.providers.ownership import is_owned
from talprov.providers.protocol import (
    ProviderState,
    Runtime,
    Step,
    StepContext,
    endpoint_without_secrets,
)
from talprov.providers.types import (
    Health,
    Machine,
    MachineRequest,
    MachineState,
    Owner,
    Retry,
    StepResult,
)
from talprov.talos.assets import Platform, require_offered
from talprov.talos.join import (
    check_user_data,
    user_data_for,
)
from talprov.talos.schematic import Schematic
from talprov.words import counted

Ctx = StepContext[AwsData, AwsState]
#: Looks at a just-launched instance that may answer "not found" (EC2 lags).
NOT_FOUND_LOOKS = 3
#: Seconds before the second look at a pending instance; doubled per look.
FIRST_LOOK_AFTER = 1.0


class AwsProvider:
    """Talos machines on EC2 (``type: aws`` in talprov.yaml)."""

    type_name: ClassVar[str] = "aws"
    config_model: ClassVar[type[BaseModel]] = AwsConfig
    data_model: ClassVar[type[BaseModel]] = AwsData
    state_model: ClassVar[type[ProviderState]] = AwsState

    def __init__(self, name: str, config: AwsConfig, runtime: Runtime) -> None:
        self.name = name
        self.config = config
        self.runtime = runtime
        self.clients = AwsClients(config, name)
        self.images = ImageResolver(self.clients, config, runtime)
        self.launcher = Launcher(self.clients, config)

    def __repr__(self) -> str:
        return f"AwsProvider({self.name!r}, region={self.config.region!r})"

    # ------------------------------------------------------------------ contract

    def steps(self) -> Sequence[Step]:
        """resolve-image → ensure-instance → wait-running; all idempotent."""
        return (
            # Reads no listing and launches nothing: runs while the listing is asked.
            Step("resolve-image", self.images.resolve, self.images.resolve_many,
                 needs_listing=False),
            # found_again: a launched instance carries its request in its tags (or
            # its call's member list) from the moment EC2 makes it, and the pass's
            # listing maps it back; its id is stored with wait-running's outcome,
            # one store write less on the path of every launch.
            Step.batched("ensure-instance", self._ensure_batch, found_again=True,
                         creates_machine=True),
            Step.batched("wait-running", self._wait_batch, timeout=self.config.running_timeout),
        )

    def list_machines(self, owner: Owner) -> list[Machine]:
        """Every live instance carrying ``owner``'s tags: ONE paginated DescribeInstances.

        Terminated instances are left out. Read-only, idempotent. Raises
        ``AuthError`` or ``Transient``.
        """
        return list_owned(self.clients.ec2, owner)

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        """Terminate every instance claiming the request (the adopted one and any
        duplicate); gone is success.

        Only instances carrying the owner's tags are ever terminated. Returns
        ``Retry`` until EC2 reports shutting-down or terminated. Idempotent.
        """
        state = cast(AwsState, ctx.state)
        ec2 = self.clients.ec2
        if ctx.observed is not None:
            ids = claimant_ids(ctx.observed)
        else:
            found = find_for_requests(ec2, ctx.owner, [ctx.request.id]).get(ctx.request.id, [])
            ids = {str(raw["InstanceId"]) for raw in found}
            if not ids and state.infra_id:
                ids = self._owned_by_id(ctx, state.infra_id)
        if not ids:
            return None
        states = terminate(ec2, sorted(ids))
        if all(s in ("shutting-down", "terminated") for s in states.values()):
            ctx.event(f"terminating {', '.join(sorted(ids))}")
            return None
        return Retry(after=self.config.poll_interval, reason="waiting for termination")

    def remove_second_machine(self, owner: Owner, machine: Machine, kept: str) -> str | None:
        """Terminate a second instance of a request, which the reconciler found
        listed beside ``kept``, the instance the request records
        (``RemovesSecondMachines``; ``talprov.aws.second_instances``). Refuses
        (None) unless both instances are read again (one DescribeInstances), the
        kept one is live, and both carry ``owner``'s tags and belong to
        ``machine.request_id`` (a batch member belongs to the member at its launch
        index only); None too when it is gone or going. Idempotent. Raises
        ``AuthError`` or ``Transient``.
        """
        return remove_second(self.clients.ec2, owner, machine, kept)

    def use_concurrency(self, calls: int) -> None:
        """Size the EC2/S3/STS clients' connection pools for ``calls`` steps at once
        (``SharesConnections``); before the first call, as clients are made lazily."""
        self.clients.concurrent_steps = calls

    def check_request(self, request: MachineRequest) -> None:
        """Pre-flight (no AWS call): a non-default schematic needs ``image_bucket``.

        Raises ``InvalidRequest`` naming the request field that makes the
        schematic non-default, or ``machine_config`` when it does not render as
        user-data, ``arch``/``secure_boot`` when the Image Factory has no aws image
        for them, and ``provider_data.instance_type`` when it is of the other
        architecture. Idempotent.
        """
        check_user_data(request)
        require_offered(Platform.AWS, request)
        instance_type = request.provider_data.get("instance_type")
        if isinstance(instance_type, str):
            has = instance_type_arch(instance_type)
            if has is not None and has != request.arch:
                raise InvalidRequest(f"{instance_type} is an {has} instance type; the request's "
                                     f"arch is {request.arch}",
                                     field="provider_data.instance_type")
        if self.config.image_bucket or Schematic.from_request(request).is_default():
            return
        culprit = next((name for name in ("extensions", "kernel_args", "meta_values", "overlay")
                        if getattr(request, name, None)), "join")
        raise InvalidRequest(
            "needs a Talos image imported from the Image Factory, and this instance has no "
            "image_bucket to import it through (set image_bucket in its config, or drop "
            "extensions, kernel args and META)", field=culprit)

    def endpoint(self) -> str:
        """The EC2 endpoint (the override, else the region's), without credentials."""
        if self.config.endpoint_url:
            return endpoint_without_secrets(self.config.endpoint_url)
        return f"https://ec2.{self.config.region}.amazonaws.com"

    def health(self) -> Health:
        """Whether EC2 answers with these credentials (DescribeAvailabilityZones). Never raises."""
        operation = "DescribeAvailabilityZones"
        try:
            with aws_errors(operation):
                reply = self.clients.ec2.describe_availability_zones()
        except ProviderError as exc:
            return Health(ok=False, message=str(exc))
        except Exception as exc:  # health never raises
            return Health(ok=False, message=f"{operation}: unexpected {type(exc).__name__} "
                          "inside talprov or botocore (a bug)")
        if "AvailabilityZones" not in reply:
            # XML without EC2's availabilityZoneInfo: botocore reads it as no data.
            return Health(ok=False, message=naming_endpoint(operation, self.endpoint())
                          + f": {not_an_aws_answer()}")
        zones = reply["AvailabilityZones"]
        return Health(ok=True, message=f"{self.config.region}: {counted(len(zones), 'zone')}")

    # ------------------------------------------------------------------ ensure-instance

    def _ensure_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | ProviderError]:
        """ensure-instance for many requests: as few launches as can be, no lookup call.

        Returns one outcome per context: ``None`` (the request has its instance)
        or the ``ProviderError`` that stopped it. Surplus instances claiming an
        adopted request are terminated. Idempotent: the pass's listing
        (``ctx.observed``, taken before the runner ran this pass's steps, after
        any process that could have launched for the request died or let go of
        it) maps every live instance to its request, so a request it does not
        show has no instance to adopt.
        """
        outcomes: dict[int, StepResult | ProviderError] = {}
        missing: list[int] = []
        for index, ctx in enumerate(ctxs):
            if ctx.state.infra_id:
                outcomes[index] = None
                continue
            found = self._listed_claimant(ctx)
            if found is not None:
                listed = ctx.observed
                tagged = (listed is not None and listed.infra_id == found
                          and listed.extra.get("request_tag") != "no")
                self._adopt(ctx, found, tagged=tagged)
                outcomes[index] = None
            else:
                missing.append(index)
        for index, problem in self._end_duplicates(ctxs).items():
            # wait-running tries again; the adoption stands either way.
            ctxs[index].event(f"could not terminate a duplicate instance yet: {problem}")
        if missing:
            errors = self.launcher.launch_all(
                [ctxs[i] for i in missing], ctxs[0].owner, self._user_data, self._adopt
            )
            for index, error in zip(missing, errors, strict=True):
                outcomes[index] = error
                if error is None and not ctxs[index].state.infra_id:
                    outcomes[index] = Retry(after=0, reason="launch did not return the instance")
        return [outcomes[i] for i in range(len(ctxs))]

    @staticmethod
    def _listed_claimant(ctx: Ctx) -> str | None:
        """The instance the pass's listing shows for the request: the one it handed
        the step, else (that one is on its way out) another claimant; None when none."""
        if ctx.observed is None:
            return None
        claimants = claimant_ids(ctx.observed)
        if ctx.observed.infra_id in claimants:
            return ctx.observed.infra_id
        return min(claimants) if claimants else None

    def _end_duplicates(self, ctxs: Sequence[Ctx]) -> dict[int, ProviderError]:
        """Terminate every instance that claims a request besides the one it adopted,
        all with one call; the error per context when that call failed.

        Duplicates come from a launch retried after a crash while EC2's listing
        lagged behind the first one. The adopted instance must be in the listing
        (alive), so that a request never loses its last instance here.
        """
        surplus: dict[int, set[str]] = {}
        for index, ctx in enumerate(ctxs):
            keep = ctx.state.infra_id
            claimants = claimant_ids(ctx.observed) if ctx.observed is not None else set()
            if keep is not None and keep in claimants and len(claimants) > 1:
                surplus[index] = claimants - {keep}
        if not surplus:
            return {}
        doomed = sorted(set().union(*surplus.values()))
        try:
            terminate(self.clients.ec2, doomed)
        except ProviderError as exc:
            return dict.fromkeys(surplus, exc)
        for index, ids in surplus.items():
            ctxs[index].event(f"terminating duplicate instance {', '.join(sorted(ids))} "
                              f"(keeping {ctxs[index].state.infra_id})")
        return {}

    def _adopt(self, ctx: Ctx, instance_id: str, *, tagged: bool) -> None:
        ctx.state.infra_id = instance_id
        ctx.state.tagged = tagged
        ctx.event(f"instance {instance_id}")

    def _user_data(self, request: MachineRequest) -> str:
        """The user-data text: the machine config plus Omni's join documents, if any.

        A join in mode ``kernel_args`` is in the schematic instead (the AMI
        imported from it carries the args). Raises ``InvalidRequest`` naming the
        field when the config is not YAML.
        """
        return user_data_for(request, named=self.config.name_machines)

    # ------------------------------------------------------------------ wait-running

    def _wait_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | ProviderError]:
        """wait-running for many requests: the listing, else ONE look at the unseen ones.

        An instance the pass's listing did not show (launched in this very pass,
        or not listed yet) is described at once, together with all others of the
        batch, instead of waiting for the next pass. Instances claiming a request
        besides the one it adopted are terminated first. Idempotent.
        """
        failed_cleanup = self._end_duplicates(ctxs)
        unseen = [ctx.state.infra_id for ctx in ctxs if ctx.state.infra_id
                  and not (ctx.observed and ctx.observed.infra_id == ctx.state.infra_id)]
        described: dict[str, dict[str, Any]] = {}
        if unseen:
            try:
                described = describe_ids(self.clients.ec2, [i for i in unseen if i])
            except ProviderError as exc:
                return [exc] * len(ctxs)
        outcomes: list[StepResult | ProviderError] = []
        for index, ctx in enumerate(ctxs):
            if index in failed_cleanup:
                # Not done while a duplicate lives: the step runs again and retries.
                outcomes.append(failed_cleanup[index])
                continue
            try:
                outcomes.append(self._running_or_not(ctx, described))
            except ProviderError as exc:
                outcomes.append(exc)
        return outcomes

    def _running_or_not(self, ctx: Ctx, described: dict[str, dict[str, Any]]) -> StepResult:
        state = ctx.state
        instance_id = state.infra_id
        if instance_id is None:
            raise InstanceLost("no instance was recorded for this request")
        machine = ctx.observed if ctx.observed and ctx.observed.infra_id == instance_id else None
        looks = state.wait_checks
        state.wait_checks = looks + 1
        if machine is None:
            raw = described.get(instance_id)
            if raw is None:
                # EC2 may not list an instance for a few seconds after launching it.
                if looks < NOT_FOUND_LOOKS:
                    return Retry(after=self._next_look(looks), reason="waiting for the instance")
                raise InstanceLost(f"instance {instance_id} no longer exists")
            machine = machine_from_instance(raw)
        if machine.state == MachineState.RUNNING:
            state.addresses = list(machine.addresses)
            ctx.event(f"instance {instance_id} running")
            return None
        ec2_state = machine.extra.get("ec2_state", machine.state.value)
        if machine.state in (MachineState.TERMINATED, MachineState.ERROR):
            reason = machine.extra.get("state_reason", "")
            detail = f": {reason}" if reason else ""
            raise InstanceLost(f"instance {instance_id} is {ec2_state}{detail}")
        return Retry(after=self._next_look(looks),
                     reason=f"instance {instance_id} still {ec2_state}")

    def _next_look(self, looks: int) -> float:
        """Seconds until the next look: 1, 2, 4, … up to ``poll_interval``.

        Most instances run within seconds of launch; the next look comes soon and
        the gaps grow only while EC2 keeps answering that it is not there yet.
        """
        return float(min(self.config.poll_interval, FIRST_LOOK_AFTER * 2 ** min(looks, 16)))

    # ------------------------------------------------------------------ helpers

    def _owned_by_id(self, ctx: StepContext[Any, Any], instance_id: str) -> set[str]:
        raw = describe_one(self.clients.ec2, instance_id)
        if raw is None or raw.get("State", {}).get("Name") == "terminated":
            return set()
        if not is_owned(tags_of(raw), ctx.owner):
            ctx.event(f"instance {instance_id} lacks talprov's ownership tags; left alone")
            return set()
        return {instance_id}


__all__ = ["AwsProvider"]
