"""The ``resolve-image`` step of the AWS provider: which AMI and instance types a
request launches with.

The official Talos AMI of a version and arch is looked up once per provider
instance (all requests of a pass with one DescribeImages); an AMI named in
``provider_data`` is described once; any other schematic is imported from the
Image Factory once per schematic (:class:`talprov.aws.images.CustomImageImporter`).
The step reads no listing and launches nothing, so the reconciler runs it while
the pass's DescribeInstances is on its way.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from talprov.aws.client import AwsClients
from talprov.aws.config import AwsConfig
from talprov.aws.data import DEFAULT_INSTANCE_TYPES, AwsData
from talprov.aws.images import (
    CustomImageImporter,
    FoundImage,
    ImageKey,
    describe_image,
    find_official_images,
)
from talprov.aws.instance_types import InstanceTypeChooser
from talprov.aws.state import AwsState
from talprov.providers.errors import InvalidRequest, ProviderError
from talprov.providers.protocol import Runtime, StepContext
from talprov.providers.types import MachineRequest, Retry, StepResult
from talprov.talos.assets import Platform
from talprov.talos.factory import images_for
from talprov.talos.join import refuse_fixed_image
from talprov.talos.schematic import Schematic

Ctx = StepContext[AwsData, AwsState]


class ImageResolver:
    """resolve-image for one provider instance, with its caches of found AMIs and
    running imports (thread-safe: steps of one pass run in parallel)."""

    def __init__(self, clients: AwsClients, config: AwsConfig, runtime: Runtime) -> None:
        self.clients = clients
        self.config = config
        self.runtime = runtime
        self._lock = threading.Lock()
        self._images: dict[ImageKey | str, FoundImage] = {}
        self._image_locks: dict[ImageKey, threading.Lock] = {}
        self._import_tasks: dict[ImageKey, str] = {}
        self._types: InstanceTypeChooser | None = None

    def resolve_many(self, ctxs: Sequence[Ctx]) -> Sequence[StepResult]:
        """resolve-image for many requests: the official AMIs of all of them in one call.

        One outcome per context (a ``ProviderError`` in the list applies to its
        request alone). Idempotent.
        """
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
                results.append(self.resolve(ctx))
            except ProviderError as exc:
                results.append(exc)
        return cast(Sequence[StepResult], results)

    def resolve(self, ctx: Ctx) -> StepResult:
        """resolve-image for one request: its AMI and instance types into its state.

        Returns ``Retry`` while an image import or a pending AMI is not ready.
        Raises ``InvalidRequest`` (secure boot, no official AMI for the version, a
        named AMI that would lose the join's kernel args) and the translated EC2
        errors. Idempotent: what is in the state already is not looked up again.
        """
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
