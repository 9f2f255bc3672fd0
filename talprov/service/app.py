"""The FastAPI application: routes, error bodies, the worker loop's lifetime.

Error bodies never echo input: FastAPI's default 422 body repeats the offending
value (``input``), which for ``config`` or ``join.api_url`` would be a secret, so
validation errors are rendered here as ``{loc, msg, type}`` only.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from talprov import __version__
from talprov.errors import constraint_in_words, quoted_in_json
from talprov.providers.protocol import Runtime
from talprov.reconcile.reconciler import ProviderHandle
from talprov.secrets import redact
from talprov.service.auth import PrincipalDep, TokenVerifier
from talprov.service.config import ServiceConfig, parse_service_config
from talprov.service.context import ServiceContext, service_context
from talprov.service.docs_ui import install_docs
from talprov.service.guarding import (
    HeadAsGetMiddleware,
    JsonTooLargeMiddleware,
    QueryGuardMiddleware,
)
from talprov.service.metrics import Metrics, instrument
from talprov.service.models import HealthView, Healthz, ProviderList, ProviderView
from talprov.service.routes_requests import AUTH_RESPONSES
from talprov.service.routes_requests import router as requests_router
from talprov.service.routes_sets import router as sets_router
from talprov.service.ui.mount import install_ui
from talprov.service.worker_process import WorkerProcess
from talprov.service.workers import ReconcileLoop, WorkerLoop
from talprov.sets import SetRepository
from talprov.store.errors import StaleRecord, StoreError, StoreFull
from talprov.store.store import Store

log = logging.getLogger(__name__)
ContextDep = Annotated[ServiceContext, Depends(service_context)]


class TalprovApi(FastAPI):
    """FastAPI with the body limit's 413 given the API's JSON error body."""

    def build_middleware_stack(self) -> Any:
        # Outside ServerErrorMiddleware: Starlette's limiter answers from there.
        return JsonTooLargeMiddleware(super().build_middleware_stack(), self.max_body_size)


def _problems(exc: RequestValidationError) -> list[dict[str, object]]:
    problems: list[dict[str, object]] = []
    for err in exc.errors():
        kind = err.get("type")
        msg = "unknown field" if kind == "extra_forbidden" else str(err.get("msg"))
        if (words := constraint_in_words(str(kind), err.get("ctx") or {})) is not None:
            msg = words  # a pattern or length in words, never pydantic's or a regex
        elif (quoted := quoted_in_json(str(kind), err.get("input"))) is not None:
            # A count or flag sent as a JSON string ("3"): say what to change, as
            # the CLI does for a quoted YAML count.
            msg = quoted
        msg = msg.removeprefix("Value error, ")  # pydantic's prefix for a validator's message
        problems.append({
            "loc": [p if isinstance(p, int) else str(p) for p in err.get("loc", ())],
            "msg": msg,
            "type": str(err.get("type", "value_error")),
        })
    return problems


def _unparsable(exc: RequestValidationError) -> str | None:
    """Why the body is not JSON at all, when that is the problem, else None.

    FastAPI reports a body that does not parse as a 422 ``json_invalid``; this
    service answers 400, as for a body that is not UTF-8 (RFC 9110: 400 for a
    request the server cannot read, 422 for content it read and refuses). The
    parser's reason and position only: never the body.
    """
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        # ("body", position): the body itself; not a field validated as JSON text.
        if err.get("type") == "json_invalid" and len(loc) == 2 and loc[0] == "body" \
                and isinstance(loc[1], int):
            reason = str((err.get("ctx") or {}).get("error") or "malformed")
            return f"the body is not valid JSON: {reason} at character {loc[1]}"
    return None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _sent_json(request: Request) -> bool:
    media_type = _media_type(request)
    return media_type == "application/json" or media_type.endswith("+json")


# A media type as RFC 9110 spells one (token "/" token): only such a value is named
# back in a 415, so the answer never repeats arbitrary header text.
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}$")


def _unsupported_media_type(request: Request, exc: RequestValidationError) -> str | None:
    """Why the body was not read, when it came in a media type that is not JSON; else None.

    FastAPI reads a body as JSON only under a JSON Content-Type; any other body
    reaches the model as bytes and fails at ``body``. That is RFC 9110's 415 (the
    content is in a format the resource does not take), not a 422 about fields it
    never looked at. A call with no body at all stays a 422 "Field required"."""
    if _sent_json(request):
        return None
    unread = any(tuple(err.get("loc", ())) == ("body",) and err.get("type") != "missing"
                 for err in exc.errors())
    if not unread:
        return None
    media_type = _media_type(request)
    sent = (f"it was sent as {media_type}" if _MEDIA_TYPE.match(media_type)
            else "it was sent without a JSON Content-Type")
    return f"the body must be JSON sent as Content-Type: application/json; {sent}"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        unsupported = _unsupported_media_type(request, exc)
        if unsupported is not None:
            return JSONResponse({"detail": unsupported},
                                status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE)
        unparsable = _unparsable(exc)
        if unparsable is not None:
            return JSONResponse({"detail": unparsable},
                                status_code=status.HTTP_400_BAD_REQUEST)
        return JSONResponse({"detail": _problems(exc)},
                            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(StaleRecord)
    async def changed_meanwhile(_request: Request, exc: StaleRecord) -> JSONResponse:
        # Another writer (a concurrent call, another replica) changed the resource
        # between our read and our write: the client's retry will see the new state.
        return JSONResponse({"detail": f"changed concurrently: {redact(str(exc))}"},
                            status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> JSONResponse:
        # The details (the store's URL and host, the database's own message, which
        # may quote a value) are for the operator's log, not for API clients.
        log.warning("store error on %s %s: %s", request.method, request.url.path,
                    redact(str(exc)))
        detail = ("the store has no space left: writes fail until space is freed (reads "
                  "still work); the server log has the details"
                  if isinstance(exc, StoreFull) else
                  "the store failed or cannot be reached; the server log has the details")
        return JSONResponse({"detail": detail},
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # Only the type: the message of an unexpected error may quote a body.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method,
                  request.url.path)
        return JSONResponse({"detail": "internal error"},
                            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


#: How long a stop waits for the reconcile loop before it says that it waits.
STOP_NOTICE_AFTER = 1.0


def _stop_loop(loop: WorkerLoop, config: ServiceConfig) -> bool:
    """Stop ``loop``, waiting at most ``config.stop_timeout``; whether it stopped.
    A wait of more than :data:`STOP_NOTICE_AFTER` is said at once, so that the
    operator sees the signal was heard (a round stuck in a cloud call holds a
    loop in a thread for all of it). Never raises."""
    notice = threading.Timer(STOP_NOTICE_AFTER, log.warning, args=(
        "stopping: waiting up to %.0f s from the stop (stop_timeout) for the reconcile pass",
        config.stop_timeout))
    notice.daemon = True
    notice.start()
    try:
        return loop.stop(config.stop_timeout)
    finally:
        notice.cancel()


def create_app(
    store: Store,
    handles: Mapping[str, ProviderHandle],
    runtime: Runtime,
    service_config: ServiceConfig | dict[str, Any] | None,
    *,
    spawn_worker: Callable[[Connection], None] | None = None,
) -> FastAPI:
    """The API over ``store``, with a reconcile loop when ``service_config.workers``:
    in a thread, or in a child process running ``spawn_worker`` when it is given
    (:class:`talprov.service.worker_process.WorkerProcess`).

    ``handles`` are the configured provider instances; they are wrapped to measure
    step durations and errors. Request sets live in ``store`` too, their secrets
    sealed with its key. The loop starts and stops with the app's lifespan.
    ``service_config`` may also be the raw ``service`` block of talprov.yaml
    (``LoadedConfig.config.service``); then it raises ``ConfigError`` naming the
    bad field.
    """
    if not isinstance(service_config, ServiceConfig):
        service_config = parse_service_config(service_config)
    metrics = Metrics()
    metrics.watch_store(store, sorted(handles))
    instrumented = {
        name: ProviderHandle(
            instrument(handle.provider, name, metrics),
            handle.concurrency,
        )
        for name, handle in handles.items()
    }
    sets = SetRepository(store)
    ctx = ServiceContext(
        store=store, handles=instrumented, runtime=runtime, config=service_config,
        tokens=TokenVerifier(service_config.tokens), metrics=metrics, sets=sets,
    )
    metrics.watch_instances(sorted(handles), ctx.failing_instances)
    metrics.watch_boot_alerts({name: h.provider for name, h in handles.items()})
    if service_config.workers and spawn_worker is not None:
        ctx.loop = WorkerProcess(spawn_worker, metrics=metrics,
                                 worker_id=service_config.worker_id)
    elif service_config.workers:
        ctx.loop = ReconcileLoop(
            store, instrumented, runtime, metrics=metrics,
            interval=service_config.reconcile_interval, lease_ttl=service_config.lease_ttl,
            worker_id=service_config.worker_id,
        )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if ctx.loop is not None:
            ctx.loop.start()
        try:
            yield
        finally:
            if ctx.loop is not None and not _stop_loop(ctx.loop, service_config):
                # Its leases are this process's, which is about to end: a later
                # talprov on this host takes them over at once (take_over_if_dead).
                log.warning("the reconcile pass did not finish within %.0f s of the stop; "
                            "a talprov started again on this host takes its leases over "
                            "at once, one on another host after lease_ttl (%.0f s)",
                            service_config.stop_timeout, service_config.lease_ttl)

    app = TalprovApi(
        title="talprov",
        version=__version__,
        description="Talos Linux machines on demand: MachineRequests and MachineRequestSets "
        "(Omni infra-provider resources) over HTTP.",
        lifespan=lifespan,
        max_body_size=service_config.max_body_bytes,
        docs_url=None,  # served from the package by install_docs, not from a CDN
        redoc_url=None,
    )
    install_docs(app)
    app.state.ctx = ctx
    app.add_middleware(QueryGuardMiddleware, seconds=service_config.query_timeout)
    # HEAD on every GET route: load balancers' health checks and monitors use it.
    app.add_middleware(HeadAsGetMiddleware)
    _install_error_handlers(app)
    app.include_router(requests_router)
    app.include_router(sets_router)
    install_ui(app)

    @app.get("/healthz", response_model=Healthz, tags=["operations"],
             responses={503: {"model": Healthz}})
    def healthz(ctx: ContextDep) -> JSONResponse:
        """Liveness and store reachability. No authentication."""
        try:
            ctx.store.lease_holder("healthz-probe")
        except StoreError:
            return JSONResponse({"status": "degraded", "store": "unreachable"},
                                status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
        return JSONResponse({"status": "ok", "store": "ok"})

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"],
             responses=AUTH_RESPONSES)
    def metrics_endpoint(principal: PrincipalDep, ctx: ContextDep, request: Request) -> Response:
        """Prometheus text format (OpenMetrics when the Accept header asks for it):
        requests by stage, queue depth, step durations, provider API errors, process
        metrics. Any valid token may read it; a token scoped to some provider
        instances sees only their series (and the process-wide ones)."""
        allowed = None if principal.all_providers else [
            name for name in ctx.handles if principal.allows_provider(name)]
        body, content_type = ctx.metrics.exposition(request.headers.get("accept"), allowed)
        return Response(body, headers={"Content-Type": content_type})

    @app.get("/v1/providers", response_model=ProviderList, tags=["providers"],
             responses=AUTH_RESPONSES)
    def list_providers(principal: PrincipalDep, ctx: ContextDep) -> ProviderList:
        """Configured provider instances the token may use: type, health, and the
        JSON Schema of their ``provider_data``."""
        items = []
        for name, handle in sorted(ctx.handles.items()):
            if not principal.allows_provider(name):
                continue
            health = ctx.health(name)
            items.append(ProviderView(
                name=name, type=handle.provider.type_name, concurrency=handle.concurrency,
                health=HealthView(ok=health.ok, message=health.message),
                provider_data_schema=handle.provider.data_model.model_json_schema(),
            ))
        return ProviderList(items=items)

    return app

