"""The AWS provider: Talos machines as EC2 instances.

Steps (each idempotent, see docs/architecture.md):

1. ``resolve-image`` — the AMI for the request's Talos version, arch and
   schematic (official, or imported once per schematic) and the instance type;
   it needs no listing, so it overlaps the pass's DescribeInstances.
2. ``ensure-instance`` — the request's instance as the pass's listing shows it
   (mapped to requests by tag, batch member list and launch index), else launch
   it; when several instances claim it, one is adopted and the others terminated.
   ``run_batch`` launches requests of one shape and one machine config with a
   single RunInstances (see :mod:`talprov.aws.members` for why that is crash
   safe); requests that cannot share a call get one call each, in parallel.
3. ``wait-running`` — from the pass's single listing; instances the listing does
   not show yet (launched in this pass) are looked at right away, all with one
   DescribeInstances, then again after a backoff that grows while EC2 answers
   ``pending``.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

from pydantic import BaseModel

from talprov.aws.archs import instance_type_arch
from talprov.aws.client import AwsClients
from talprov.aws.config import AwsConfig
from talprov.aws.data import DEFAULT_INSTANCE_TYPES, AwsData
from talprov.aws.errors import InstanceLost, aws_errors
from talprov.aws.images import (
    CustomImageImporter,
    FoundImage,
    ImageKey,
    describe_image,
    find_official_images,
)
from talprov.aws.instance_types import InstanceTypeChooser
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
from talprov.aws.state import AwsState
from talprov.providers.errors import InvalidRequest, ProviderError
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
from talprov.talos.factory import images_for
from talprov.talos.join import (
    check_user_data,
    refuse_fixed_image,
    user_data_for,
)
from talprov.talos.schematic import Schematic

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
        self.clients = AwsClients(config)
        self._lock = threading.Lock()
        self._images: dict[ImageKey | str, FoundImage] = {}
        self._image_locks: dict[ImageKey, threading.Lock] = {}
        self._import_tasks: dict[ImageKey, str] = {}
        self._types: InstanceTypeChooser | None = None
        self.launcher = Launcher(self.clients, config)

    def __repr__(self) -> str:
        return f"AwsProvider({self.name!r}, region={self.config.region!r})"

    # ------------------------------------------------------------------ contract

    def steps(self) -> Sequence[Step]:
        """resolve-image → ensure-instance → wait-running; all idempotent."""
        return (
            # Reads no listing and launches nothing: runs while the listing is asked.
            Step("resolve-image", self._resolve_image, self._resolve_images,
                 needs_listing=False),
            Step.batched("ensure-instance", self._ensure_batch),
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
        try:
            with aws_errors("DescribeAvailabilityZones"):
                zones = self.clients.ec2.describe_availability_zones().get("AvailabilityZones", [])
        except ProviderError as exc:
            return Health(ok=False, message=str(exc))
        except Exception as exc:  # health never raises
            return Health(ok=False, message=f"{type(exc).__name__}")
        return Health(ok=True, message=f"{self.config.region}: {len(zones)} zones")

    # ------------------------------------------------------------------ resolve-image

    def _resolve_images(self, ctxs: Sequence[Ctx]) -> Sequence[StepResult]:
        """resolve-image for many requests: the official AMIs of all of them in one call."""
        wanted = set()
        for ctx in ctxs:
            key = self._official_key(ctx)
            if key is not None and key not in self._images:
                wanted.add(key)
        lookup_error: ProviderError | None = None
        try:
            self._lookup_official(wanted)
        except ProviderError as exc:
            lookup_error = exc
        # An exception in the list applies to that request alone (the runner's rule).
        results: list[Any] = []
        for ctx in ctxs:
            if lookup_error is not None and self._official_key(ctx) in wanted:
                results.append(lookup_error)
                continue
            try:
                results.append(self._resolve_image(ctx))
            except ProviderError as exc:
                results.append(exc)
        return cast(Sequence[StepResult], results)

    def _resolve_image(self, ctx: Ctx) -> StepResult:
        state, data, request = ctx.state, ctx.data, ctx.request
        if not state.nonce:
            state.nonce = secrets.token_hex(8)
        if request.secure_boot:
            raise InvalidRequest("secure boot AMIs are not supported by the AWS driver yet",
                                 field="secure_boot")
        # The official AMI is the default schematic, which never holds join args:
        # only an AMI named in provider_data can lose them.
        refuse_fixed_image(request, "provider_data.ami", data.ami)
        if state.image_id is None:
            image = self._image_for(ctx)
            if image is None or image.state != "available":
                reason = "importing the Talos image" if image is None else "AMI pending"
                return Retry(after=self.config.poll_interval * 3, reason=reason)
            state.image_id = image.image_id
            state.root_device_name = image.root_device_name
            state.import_task_id = None
            ctx.event(f"image {image.image_id}")
        if not state.instance_types:
            state.instance_types = list(self._instance_types(data, request))
        return None

    def _official_key(self, ctx: Ctx) -> ImageKey | None:
        if ctx.data.ami or ctx.state.image_id:
            return None
        schematic = Schematic.from_request(ctx.request)
        if not schematic.is_default():
            return None
        return ImageKey(ctx.request.talos_version, str(ctx.request.arch), schematic.id())

    def _lookup_official(self, keys: set[ImageKey]) -> None:
        if not keys:
            return
        found = find_official_images(self.clients.ec2, self.config.region, keys)
        with self._lock:
            for key, image in found.items():
                self._images[key] = image

    def _image_for(self, ctx: Ctx) -> FoundImage | None:
        ami = ctx.data.ami
        if ami:
            if ami not in self._images:
                image = describe_image(self.clients.ec2, ami)
                with self._lock:
                    self._images[ami] = image
            return self._images[ami]
        key = self._official_key(ctx)
        if key is not None:
            if key not in self._images:
                self._lookup_official({key})
            if key not in self._images:
                raise InvalidRequest(
                    f"no official Talos AMI {key.official_name(self.config.region)} "
                    f"(owner 540036508848) in {self.config.region}",
                    field="talos_version",
                )
            return self._images[key]
        return self._import(ctx)

    def _import(self, ctx: Ctx) -> FoundImage | None:
        request = ctx.request
        schematic = Schematic.from_request(request)
        key = ImageKey(request.talos_version, str(request.arch), schematic.id())
        with self._lock:
            if key in self._images:
                return self._images[key]
            key_lock = self._image_locks.setdefault(key, threading.Lock())
        # One import per schematic at a time in this process; the tag lookup and
        # the ClientToken take care of other processes.
        with key_lock:
            task = ctx.state.import_task_id or self._import_tasks.get(key)
            progress = self._importer().advance(key, task, lambda: self._fetch(schematic, request))
        if progress.image is not None:
            if progress.image.state == "available":
                with self._lock:
                    self._images[key] = progress.image
            return progress.image
        ctx.state.import_task_id = progress.task_id
        if progress.task_id:
            with self._lock:
                self._import_tasks[key] = progress.task_id
        return None

    def _importer(self) -> CustomImageImporter:
        return CustomImageImporter(
            self.clients.ec2, lambda: self.clients.s3,
            bucket=self.config.image_bucket, prefix=self.config.image_prefix,
            role_name=self.config.import_role, work_dir=self.runtime.cache_dir / "aws",
            progress=self.runtime.progress,
        )

    def _fetch(self, schematic: Schematic, request: MachineRequest) -> Path:
        factory = images_for(self.runtime)
        schematic_id = factory.register(schematic)
        url = factory.image_url(schematic_id, request.talos_version, Platform.AWS, request.arch)
        return factory.download(url, progress=self.runtime.progress)

    def _instance_types(self, data: AwsData, request: MachineRequest) -> tuple[str, ...]:
        if data.instance_type:
            return (data.instance_type,)
        if data.cpu is None or data.memory is None:
            return (DEFAULT_INSTANCE_TYPES[str(request.arch)],)
        with self._lock:
            if self._types is None:
                self._types = InstanceTypeChooser(self.clients.ec2)
            chooser = self._types
        return chooser.choose(data.cpu, data.memory, str(request.arch), data.spot.enabled)

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
