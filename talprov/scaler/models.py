"""The documents of a cluster spec as pydantic models, one per ``kind``.

These models check the shape of each YAML document; :mod:`talprov.scaler.spec`
reads the stream, resolves files and references, and assembles the
:class:`ClusterSpec` the planner works from. Field names in camelCase follow the
issue's spec format (and Cluster API's), provider-facing fields keep the
snake_case of a request file so a class reads like the request it produces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from talprov.providers.labels import Labels, UserLabels
from talprov.providers.types import (
    Arch,
    JoinSpec,
    MetaValue,
    NewTalosVersion,
    Overlay,
    RequestFlag,
    is_stored,
)

# Cluster and set names end up inside request ids, which are DNS labels.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
#: A cluster's name: as NAME_PATTERN, at most 42 characters (room for its sets'
#: names and member numbers in request ids), so an error can say the one limit.
CLUSTER_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$"
CONTROL_PLANE_SET = "control-planes"
_PERCENT = re.compile(r"^(\d{1,3})%$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class Role(StrEnum):
    CONTROLPLANE = "controlplane"
    WORKER = "worker"


class DeleteOrder(StrEnum):
    OLDEST = "oldest"
    NEWEST = "newest"
    RANDOM = "random"


IntOrPercent = int | str


def check_int_or_percent(value: IntOrPercent) -> IntOrPercent:
    """Accept a count >= 0 or a percentage ``"0%"``..``"100%"``; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("must be an integer or a percentage like 25%")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must be >= 0")
        return value
    match = _PERCENT.match(value.strip())
    if match is None or int(match.group(1)) > 100:
        raise ValueError("must be an integer or a percentage between 0% and 100%")
    return f"{int(match.group(1))}%"


def resolve_int_or_percent(value: IntOrPercent, total: int, *, round_up: bool) -> int:
    """``value`` as a count of ``total``; percentages round up or down (as Kubernetes does)."""
    if isinstance(value, int):
        return value
    percent = int(value[:-1])
    scaled = total * percent
    return -(-scaled // 100) if round_up else scaled // 100


def parse_duration(value: object) -> timedelta:
    """Parse ``90s``, ``15m``, ``1h30m``, ``500ms`` or a number of seconds; raise ValueError."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("must be a duration like 90s, 15m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("must be a duration like 90s, 15m or 1h")
    text = value.strip()
    pos, seconds = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError("must be a duration like 90s, 15m or 1h")
    return timedelta(seconds=seconds)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False)


class ConfigRef(_Doc):
    """A Talos machine config (or patch): a file relative to the spec, or inline text."""

    file: str | None = Field(default=None, min_length=1)
    inline: SecretStr | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ConfigRef:
        if (self.file is None) == (self.inline is None):
            raise ValueError("give exactly one of file or inline")
        return self


class TalosSettings(_Doc):
    version: NewTalosVersion


class ClusterDoc(_Doc):
    kind: Literal["Cluster"]
    name: str = Field(pattern=CLUSTER_NAME_PATTERN, max_length=42)
    talos: TalosSettings
    join: JoinSpec | None = None


class FailureDomain(_Doc):
    """A zone/subnet/node/cluster a class spreads over, with provider_data overrides."""

    name: str = Field(min_length=1, max_length=63)
    provider_data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: object) -> object:
        return {"name": value} if isinstance(value, str) else value


class MachineClass(_Doc):
    """What machines of a class are made of: provider instance, schematic, provider_data."""

    kind: Literal["MachineClass"] = "MachineClass"
    name: str = Field(min_length=1, max_length=63)
    provider: str = Field(min_length=1)
    provider_data: dict[str, Any] = Field(default_factory=dict)
    arch: Arch = Arch.AMD64
    secure_boot: RequestFlag = False
    extensions: tuple[str, ...] = ()
    kernel_args: tuple[str, ...] = ()
    meta_values: tuple[MetaValue, ...] = ()
    overlay: Overlay | None = None
    failure_domains: tuple[FailureDomain, ...] = Field(default=(), alias="failureDomains")

    @field_validator("failure_domains")
    @classmethod
    def _unique_domains(cls, value: tuple[FailureDomain, ...]) -> tuple[FailureDomain, ...]:
        names = [domain.name for domain in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate failure domain {duplicates[0]!r}")
        return value


#: Most machines one set may have: a cluster spec's set, a request set (the API's
#: limit), whatever command or file gives the size.
MAX_SET_SIZE = 1000


class ClassRef(_Doc):
    name: str = Field(min_length=1)
    # Strict, as the API's counts: a quoted "2" is a mistake, not a number.
    size: int = Field(ge=0, le=MAX_SET_SIZE, strict=True)


class UpdateStrategy(_Doc):
    """Rolling replacement bounds, as a Kubernetes/Cluster API RollingUpdate."""

    max_surge: IntOrPercent = Field(default=1, alias="maxSurge")
    max_unavailable: IntOrPercent = Field(default=0, alias="maxUnavailable")

    @field_validator("max_surge", "max_unavailable")
    @classmethod
    def _count_or_percent(cls, value: IntOrPercent) -> IntOrPercent:
        return check_int_or_percent(value)


class RemediationPolicy(_Doc):
    """Replacement of unhealthy machines, bounded like a MachineHealthCheck."""

    max_in_flight: int = Field(default=1, ge=0, alias="maxInFlight", strict=True)
    max_unhealthy: IntOrPercent = Field(default="40%", alias="maxUnhealthy")

    @field_validator("max_unhealthy")
    @classmethod
    def _count_or_percent(cls, value: IntOrPercent) -> IntOrPercent:
        return check_int_or_percent(value)


class NodeTaint(_Doc):
    """A Kubernetes taint the nodes of an autoscaled set carry (for its template node)."""

    key: str = Field(min_length=1, max_length=316)
    value: str = Field(default="", max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class AutoscalingOptions(_Doc):
    """Per-set overrides of the Cluster Autoscaler's node group options (all optional)."""

    scale_down_utilization_threshold: float | None = Field(
        default=None, ge=0, le=1, alias="scaleDownUtilizationThreshold")
    scale_down_gpu_utilization_threshold: float | None = Field(
        default=None, ge=0, le=1, alias="scaleDownGpuUtilizationThreshold")
    scale_down_unneeded_time: timedelta | None = Field(default=None, alias="scaleDownUnneededTime")
    scale_down_unready_time: timedelta | None = Field(default=None, alias="scaleDownUnreadyTime")
    max_node_provision_time: timedelta | None = Field(default=None, alias="maxNodeProvisionTime")

    @field_validator("scale_down_unneeded_time", "scale_down_unready_time",
                     "max_node_provision_time", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and value.startswith("P")):
            return value  # ISO 8601, as a recorded spec stores it: pydantic reads it
        return parse_duration(value)


class Autoscaling(_Doc):
    """A Workers set the Kubernetes Cluster Autoscaler may resize within ``min..max``.

    ``nodeLabels``/``nodeTaints`` describe the Kubernetes nodes the set's machines
    become, for the autoscaler's template node (talprov does not set them on the
    node: the machine config does).
    """

    min: int = Field(ge=0, strict=True)
    max: int = Field(ge=1, strict=True)
    # Kubernetes node labels: Kubernetes' label rule, as every label talprov takes.
    node_labels: Labels = Field(default_factory=dict, alias="nodeLabels")
    node_taints: tuple[NodeTaint, ...] = Field(default=(), alias="nodeTaints")
    options: AutoscalingOptions = Field(default_factory=AutoscalingOptions)

    @field_validator("max")
    @classmethod
    def _at_most_the_set_size_cap(cls, value: int, info: ValidationInfo) -> int:
        # A spec recorded before the cap existed must stay readable (STORED).
        if value > MAX_SET_SIZE and not is_stored(info):
            raise ValueError(f"must be <= {MAX_SET_SIZE}")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min > self.max:
            raise ValueError(f"min: must be <= max ({self.max})")
        return self

    def clamp(self, size: int) -> int:
        """``size`` moved into ``min..max``. Pure."""
        return max(self.min, min(self.max, size))


class SetDoc(_Doc):
    """A ControlPlane or Workers document."""

    kind: Literal["ControlPlane", "Workers"]
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    machine_class: ClassRef = Field(alias="machineClass")
    config: ConfigRef | None = None
    patches: tuple[ConfigRef, ...] = ()
    labels: UserLabels = Field(default_factory=dict)
    update: UpdateStrategy = Field(default_factory=UpdateStrategy)
    delete_order: DeleteOrder = Field(default=DeleteOrder.OLDEST, alias="deleteOrder")
    provision_timeout: timedelta = Field(default=timedelta(minutes=15), alias="provisionTimeout")
    remediation: RemediationPolicy = Field(default_factory=RemediationPolicy)
    autoscaling: Autoscaling | None = None

    @field_validator("provision_timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        return parse_duration(value)


    @model_validator(mode="after")
    def _names(self) -> SetDoc:
        if self.autoscaling is not None:
            if self.kind != "Workers":
                raise ValueError("autoscaling: only Workers sets can be autoscaled")
            bounds = self.autoscaling
            if not bounds.min <= self.machine_class.size <= bounds.max:
                raise ValueError(
                    f"machineClass.size: the initial size of an autoscaled set must be within "
                    f"autoscaling.min..max ({bounds.min}..{bounds.max})")
        if self.kind == "Workers":
            if self.update.max_surge in (0, "0%") and self.update.max_unavailable in (0, "0%"):
                raise ValueError("update: maxSurge and maxUnavailable cannot both be 0")
            if self.name is None:
                raise ValueError("name: is required for Workers")
            if self.name == CONTROL_PLANE_SET:
                raise ValueError(f"name: {CONTROL_PLANE_SET!r} is reserved for the ControlPlane")
        elif self.name not in (None, CONTROL_PLANE_SET):
            raise ValueError(f"name: a ControlPlane is always named {CONTROL_PLANE_SET!r}")
        else:
            if self.machine_class.size < 1:
                raise ValueError("machineClass.size: a control plane needs >= 1 machine")
            if self.update.max_surge not in (0, 1):
                # 1: create the replacement first; 0: remove the old member first.
                raise ValueError(
                    "update.maxSurge: control planes are replaced one at a time: 0 or 1"
                )
            if self.update.max_unavailable not in (0, "0%"):
                raise ValueError("update.maxUnavailable: must be 0 for control planes")
        return self


class MachineSetSpec(_Doc):
    """One resolved machine set: what it is made of and how it changes."""

    name: str
    role: Role
    machine_class: str
    size: int
    machine_config: SecretStr = SecretStr("")
    labels: dict[str, str] = Field(default_factory=dict)
    update: UpdateStrategy = Field(default_factory=UpdateStrategy)
    delete_order: DeleteOrder = DeleteOrder.OLDEST
    provision_timeout: timedelta = timedelta(minutes=15)
    remediation: RemediationPolicy = Field(default_factory=RemediationPolicy)
    autoscaling: Autoscaling | None = None


class ClusterSpec(_Doc):
    """A whole resolved cluster spec: the planner's desired state.

    ``sets`` is ordered: the control plane first, then worker sets in file order.
    Templates derived from the spec are cached on the instance (it is frozen).
    """

    name: str
    talos_version: str
    join: JoinSpec | None = None
    machine_classes: dict[str, MachineClass]
    sets: dict[str, MachineSetSpec]
    _cache: dict[Any, Any] = PrivateAttr(default_factory=dict)
    # Where each class's and set's document was read (spec.load_spec), so checks
    # made after loading name it as the loader's own errors do. Not stored.
    _documents: dict[tuple[str, str], str] = PrivateAttr(default_factory=dict)

    def remember_documents(self, classes: Mapping[str, str], sets: Mapping[str, str]) -> None:
        """Record the document label (``cluster.yaml: document 2 (MachineClass "a")``)
        of each machine class and set, by name. Idempotent."""
        self._documents.update({("class", name): label for name, label in classes.items()})
        self._documents.update({("set", name): label for name, label in sets.items()})

    def document(self, what: Literal["class", "set"], name: str) -> str | None:
        """The label :meth:`remember_documents` recorded for class or set ``name``,
        or None (a spec read back from the store). Pure."""
        return self._documents.get((what, name))

    @property
    def cache(self) -> dict[Any, Any]:
        """Values derived from this spec (templates, hashes), computed on first use."""
        # Read through __pydantic_private__: the attribute route goes through a slow
        # descriptor probe, which showed up in the 10,000-machine benchmark.
        private = self.__pydantic_private__
        assert private is not None
        cache: dict[Any, Any] = private["_cache"]
        return cache

    def domains(self, set_name: str) -> tuple[str | None, ...]:
        """The failure domain names of a set's class, or ``(None,)`` when it has none."""
        machine_class = self.machine_classes[self.sets[set_name].machine_class]
        return tuple(d.name for d in machine_class.failure_domains) or (None,)

    def scaled(self, set_name: str, size: int) -> ClusterSpec:
        """A copy with one set resized (what ``talprov scale`` records). Raises KeyError."""
        sets = dict(self.sets)
        sets[set_name] = sets[set_name].model_copy(update={"size": size})
        copy = self.model_copy(update={"sets": sets})
        copy._cache = {}  # model_copy shares private attributes; start clean
        return copy

    def keeping_autoscaled_sizes(self, previous: ClusterSpec) -> ClusterSpec:
        """This spec with each autoscaled set at the size ``previous`` recorded for it
        (moved into the new min..max), so re-applying a spec does not undo the
        autoscaler's work: an autoscaled set's ``size`` in a file is its initial
        size. Sets new to autoscaling keep the file's size. Pure."""
        result = self
        for name, machine_set in self.sets.items():
            before = previous.sets.get(name)
            if machine_set.autoscaling is None or before is None or before.autoscaling is None:
                continue
            size = machine_set.autoscaling.clamp(before.size)
            if size != machine_set.size:
                result = result.scaled(name, size)
        return result
