"""What every route shares, and the conversions between API bodies and requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import SecretStr, ValidationError

from talprov.errors import (
    NOT_UNICODE,
    ConfigError,
    lone_surrogate_at,
    quoted_in_json,
    refuse_lone_surrogates,
)
from talprov.providers.errors import InvalidRequest
from talprov.providers.protocol import ChecksRequests, Runtime
from talprov.providers.types import Health, MachineRequest
from talprov.reconcile.reconciler import ProviderHandle
from talprov.registry import strict_provider_data
from talprov.secrets import redact
from talprov.service.auth import Principal, TokenVerifier
from talprov.service.config import ServiceConfig
from talprov.service.metrics import Metrics
from talprov.service.models import API_LABELS, MachineRequestView, MachineTemplate
from talprov.service.workers import WorkerLoop
from talprov.sets import SetRepository
from talprov.store.records import RequestRecord, public_view
from talprov.store.store import Store


@dataclass
class ServiceContext:
    store: Store
    handles: dict[str, ProviderHandle]
    runtime: Runtime
    config: ServiceConfig
    tokens: TokenVerifier
    metrics: Metrics
    sets: SetRepository
    loop: WorkerLoop | None = None
    _health: dict[str, tuple[float, Health]] = field(default_factory=dict)
    _health_lock: threading.Lock = field(default_factory=threading.Lock)

    def wake(self) -> None:
        """Tell the local reconcile loop there is new work."""
        if self.loop is not None:
            self.loop.wake()

    def failing_instances(self) -> dict[str, str]:
        """Instances the local reconcile loop backs off from, with why. Never raises."""
        if self.loop is None:
            return {}
        return {name: trouble.describe()
                for name, trouble in self.loop.instance_troubles().items()}

    def health(self, name: str) -> Health:
        """The provider's health, cached for ``health_cache_seconds``. Never raises.

        An instance whose listing the local reconcile loop is backing off from is
        unhealthy, with the loop's reason (kind, endpoint, since, next attempt).
        """
        failing = self.failing_instances().get(name)
        if failing is not None:
            return Health(ok=False, message=failing)
        now = time.monotonic()
        with self._health_lock:
            cached = self._health.get(name)
        if cached is not None and now - cached[0] < self.config.health_cache_seconds:
            return cached[1]
        try:
            result = self.handles[name].provider.health()
        except Exception as exc:
            result = Health(ok=False, message=f"health check raised {type(exc).__name__}")
        result = Health(ok=result.ok, message=redact(result.message))
        with self._health_lock:
            self._health[name] = (now, result)
        return result


def service_context(request: Request) -> ServiceContext:
    """The app's shared context (a FastAPI dependency)."""
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def field_error(loc: Sequence[str | int], msg: str, kind: str = "value_error") -> NoReturn:
    """Raise a 422 naming ``loc`` (rendered like FastAPI's own validation errors)."""
    raise RequestValidationError([{"loc": tuple(loc), "msg": msg, "type": kind}])


def _check_config(text: str, talos_version: str) -> None:
    from talprov.talos.configschema import check_config
    from talprov.talos.machineconfig import load_documents

    try:
        documents = load_documents(text, "config")
        # A YAML escape in the text ("\\ud800" inside the JSON string) makes one too.
        for number, document in enumerate(documents, start=1):
            refuse_lone_surrogates(document, f"config: document {number}")
        check_config(documents, "config", talos_version)
    except ConfigError as exc:
        # ConfigError messages name lines and fields, never content.
        field_error(("body", "config"), str(exc))


def _check_encodable(value: object, loc: tuple[str | int, ...]) -> None:
    """422 at the first string holding a lone UTF-16 surrogate.

    JSON can escape one (``"\\ud800"``) and the body parser keeps it, but it has
    no UTF-8 form: a store, a provider SDK or the Image Factory would fail on it
    later, in the worker, again on every retry (files refuse it the same way,
    :func:`talprov.errors.refuse_lone_surrogates`). Messages never quote the value.
    """
    found = lone_surrogate_at(value)
    if found is not None:
        field_error((*loc, *found), NOT_UNICODE)


def check_labels(labels: dict[str, str],
                 stored_labels: Callable[[], Mapping[str, str] | None]) -> None:
    """422 naming each label Kubernetes' rule refuses (``loc`` body.labels.<key>),
    unless ``stored_labels()`` (the labels of the live request or set the body
    would create again, None when there is none) are exactly ``labels``.

    The rule is newer than some stored requests and sets (revision 0009): a client
    replaying the create of one unchanged must get the answer of an idempotent
    create, not a 422 for the labels it was made with; a new one, or one sent with
    other labels, follows the rule. ``stored_labels`` is called only when the rule
    refuses a label. Read-only.
    """
    try:
        API_LABELS.validate_python(labels)
    except ValidationError as exc:
        if stored_labels() == labels:
            return
        raise RequestValidationError(
            [{"loc": ("body", "labels", *err["loc"]), "msg": err["msg"], "type": err["type"],
              "ctx": err.get("ctx") or {}} for err in exc.errors()]) from None


def _no_stored_labels() -> None:
    return None


def build_request(
    ctx: ServiceContext, principal: Principal, template: MachineTemplate, request_id: str,
    *, stored_labels: Callable[[], Mapping[str, str] | None] = _no_stored_labels,
) -> MachineRequest:
    """A MachineRequest from an API body; 403 out of scope, 422 naming the field.

    Labels follow Kubernetes' rule unless they are those of the live request or set
    the body creates again (:func:`check_labels` with ``stored_labels``).
    ``provider_data`` is validated with the provider's own model, strictly (JSON
    types: ``"2"`` is no number); every problem is reported at
    ``body.provider_data.<field>`` (input values are never echoed).
    """
    principal.require_provider(template.provider)
    check_labels(template.labels, stored_labels)
    handle = ctx.handles.get(template.provider)
    if handle is None:
        # Only the instances this token may use: the others are none of its business.
        known = ", ".join(n for n in sorted(ctx.handles) if principal.allows_provider(n))
        known = known or "none"
        field_error(("body", "provider"), f"unknown provider instance (configured: {known})")
    # First: provider_data is validated as JSON text, which cannot hold a lone surrogate.
    for name, value in template.model_dump(exclude={"config", "join"}).items():
        _check_encodable(value, ("body", name))
    try:
        # Strict, as JSON: a number or boolean must be sent as one ("cores": "2" is a
        # 422, as machine_count "2" is); request files and cluster specs share this.
        strict_provider_data(handle.provider.data_model, template.provider_data)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {"loc": ("body", "provider_data", *err["loc"]),
                 # The input itself is left out: error bodies never repeat what was sent.
                 "msg": quoted_in_json(err["type"], err.get("input")) or err["msg"],
                 "type": err["type"]}
                for err in exc.errors()
            ]
        ) from None
    config = template.config.get_secret_value() if template.config is not None else ""
    _check_encodable(config, ("body", "config"))
    if template.join is not None:
        _check_encodable(template.join.model_dump(exclude={"api_url"}), ("body", "join"))
        _check_encodable(template.join.api_url.get_secret_value(), ("body", "join", "api_url"))
    if config.strip():
        _check_config(config, template.talos_version)
    # Only the template's own fields: a set body also carries name and machine_count.
    shared = set(MachineTemplate.model_fields) - {"config", "join"}
    body: dict[str, Any] = template.model_dump(include=shared)
    body["id"] = request_id
    body["machine_config"] = SecretStr(config)
    body["join"] = template.join
    try:
        request = MachineRequest.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{"loc": ("body", *err["loc"]), "msg": err["msg"], "type": err["type"]}
             for err in exc.errors()]
        ) from None
    # The wrapped provider itself: from Python 3.12 on, isinstance against a
    # runtime-checkable protocol does not see methods the metrics wrapper forwards.
    checker = getattr(handle.provider, "inner", handle.provider)
    if isinstance(checker, ChecksRequests):
        try:
            checker.check_request(request)
        except InvalidRequest as exc:
            field = exc.field or "provider"
            message = exc.message.removeprefix(f"{field}: ")
            # The request model's machine_config is the API body's config.
            field = "config" if field == "machine_config" else field
            field_error(("body", *field.split(".")), message)
    return request


def request_view(record: RequestRecord) -> MachineRequestView:
    """The public view of a stored request (``public_view``, as the CLI shows it)."""
    return MachineRequestView.model_validate(public_view(record))
