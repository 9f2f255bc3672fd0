"""``/v1/machine-requests``: create, read, list, delete, retry and force-forget requests."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status

from talprov.errors import BeingDeleted, Conflict
from talprov.providers.types import REQUEST_ID_PATTERN, Stage
from talprov.reconcile.retry import retry_failed
from talprov.requestfile import generate_request_id
from talprov.service.auth import Principal, PrincipalDep, TokenRoute
from talprov.service.context import (
    ServiceContext,
    build_request,
    field_error,
    request_view,
    service_context,
)
from talprov.service.models import (
    EventView,
    ForgetBody,
    ForgetResult,
    MachineRequestCreate,
    MachineRequestList,
    MachineRequestView,
    Problem,
    ValidationProblem,
)
from talprov.store.errors import StaleRecord
from talprov.store.records import RequestRecord, forgotten_leaves

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/machine-requests", tags=["machine-requests"], route_class=TokenRoute)
ContextDep = Annotated[ServiceContext, Depends(service_context)]
# Path and query values reach SQL; PostgreSQL text cannot hold NUL, and an id
# that does not match the id pattern cannot exist anyway.
RequestId = Annotated[str, Path(pattern=REQUEST_ID_PATTERN, max_length=63)]
NO_NUL = r"^[^\x00]*$"

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or invalid bearer token."},
    403: {"model": Problem, "description": "The token may not do this (scope or access)."},
    503: {"model": Problem, "description": "The store cannot be reached."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem,
          "description": "No such request (or it is gone, or outside the token's providers)."}
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationProblem, "description": "Invalid body; `loc` names the field."}
}
#: What a route that reads a JSON body answers to one it cannot parse, besides INVALID.
BAD_BODY: dict[int | str, dict[str, Any]] = {
    **INVALID,
    400: {"model": Problem, "description": "The body is not JSON (malformed, not UTF-8, "
          "or nested too deeply to parse)."},
    415: {"model": Problem, "description": "The body was sent without Content-Type: "
          "application/json (or another +json type), so it was not read."},
}


def not_found(request_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"request {request_id} not found")


def visible_record(ctx: ServiceContext, principal: Principal, request_id: str) -> RequestRecord:
    """The live request ``request_id``; 404 when unknown, gone, or out of the token's scope.

    A request of a provider the token may not use is answered exactly like one
    that does not exist: a 403 there would tell a token scoped to one provider
    which ids exist under the others (and, through its message, their provider).
    """
    record = ctx.store.get_request(request_id)
    if record is None or record.stage == Stage.GONE:
        raise not_found(request_id)
    if not principal.allows_provider(record.request.provider):
        raise not_found(request_id)
    return record


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MachineRequestView,
    summary="Create a machine request (idempotent on id)",
    responses={
        200: {"model": MachineRequestView, "description": "Same body as the existing request."},
        409: {"model": Problem, "description": "The id is in use with a different body, or "
              "its request is being deleted."},
        **AUTH_RESPONSES, **BAD_BODY,
    },
)
def create_machine_request(
    body: MachineRequestCreate, principal: PrincipalDep, ctx: ContextDep, response: Response
) -> MachineRequestView:
    """Record a MachineRequest; the reconcile workers then provision it.

    Sending the same body again returns the same resource with 200; a different
    body under an existing id is a 409 (delete it first, or pick another id), and
    so is any body while the request of that id is being deleted.
    A token scoped to some providers gets its id derived from the one it sent
    (see :func:`scoped_request_id`): use the ``id`` of the answer afterwards.
    A body without ``id`` gets a generated one (derived the same way for a scoped
    token); sending it again makes another request.
    """
    sent = body.id or generate_request_id()
    request_id = scoped_request_id(ctx, principal, sent, body.provider)

    def stored_labels() -> dict[str, str] | None:
        found = ctx.store.get_request(request_id)
        return None if found is None or found.stage == Stage.GONE \
            else dict(found.request.labels)

    machine_request = build_request(ctx, principal, body, request_id,
                                    stored_labels=stored_labels)
    try:
        record, created = ctx.store.create_or_get_request(machine_request)
    except BeingDeleted:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"request {sent} is being deleted; create it again once it is gone (404)",
        ) from None
    except Conflict:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"request {sent} already exists with a different body",
        ) from None
    if created:
        ctx.wake()
    else:
        response.status_code = status.HTTP_200_OK
    return request_view(record)


#: Hex digits of the suffix of an id derived for a scoped token.
SCOPED_SUFFIX_HEX = 10
#: Longest id a scoped token may send: the derived id must fit in 63 characters.
SCOPED_ID_MAX = 63 - 1 - SCOPED_SUFFIX_HEX


def derived_request_id(provider: str, sent_id: str) -> str:
    """``<sent_id>-<hash of provider and sent_id>``: the id under which a request of
    a scoped token is stored. Pure and deterministic, so a retry finds the same
    request; different per provider, so it cannot meet an id of another scope."""
    digest = hashlib.sha256(f"{provider}\0{sent_id}".encode()).hexdigest()
    return f"{sent_id}-{digest[:SCOPED_SUFFIX_HEX]}"


def scoped_name(principal: Principal, sent: str, provider: str,
                owner_of: Callable[[str], str | None], *, field: str, longest: int) -> str:
    """The name (request id, set name) a resource a token creates is stored under.

    Names are global, so a token scoped to some providers that chose them freely
    would get 409 for a name taken in another scope and 201 for a free one: it
    could enumerate the other scopes' names. Instead its resources live under
    :func:`derived_request_id`, whether or not ``sent`` is taken elsewhere. Tokens
    of all providers keep ``sent``, and so does a scoped token whose own provider
    already holds it (``owner_of`` names the provider of the resource called
    ``sent``, or None): stores from before this rule keep working. 422 naming
    ``body.<field>`` when ``sent`` is longer than ``longest``.
    """
    if principal.all_providers:
        return sent
    owner = owner_of(sent)
    if owner is not None and principal.allows_provider(owner):
        return sent
    if len(sent) > longest:
        field_error(("body", field), f"at most {longest} characters for a token scoped "
                    "to some providers (the service appends a suffix)")
    return derived_request_id(provider, sent)


def scoped_request_id(ctx: ServiceContext, principal: Principal, sent: str,
                      provider: str) -> str:
    """The id the request ``sent`` by ``principal`` for ``provider`` is stored under
    (see :func:`scoped_name`)."""
    def owner(request_id: str) -> str | None:
        found = ctx.store.get_request(request_id)
        return None if found is None else found.request.provider

    return scoped_name(principal, sent, provider, owner, field="id",
                       longest=SCOPED_ID_MAX)


#: The largest page ``GET /v1/machine-requests`` hands out, and the page size
#: when the caller gives no ``limit``: no list is unbounded.
MAX_PAGE = 1000
#: Most ``label`` filters one list call may give; every one costs the database work.
MAX_LABEL_FILTERS = 16
#: ``limit`` and ``after`` of every paged list (requests, sets).
PageLimit = Annotated[int, Query(
    ge=1, le=MAX_PAGE, description="At most this many items; when the page is full, the "
    "answer's `next` is the cursor for the following page.")]
PageAfter = Annotated[str | None, Query(
    description="Only items sorting after this one (the `next` of the previous page).",
    pattern=NO_NUL, max_length=255)]


@router.get(
    "",
    response_model=MachineRequestList,
    summary="List machine requests",
    responses={**AUTH_RESPONSES, **INVALID},
)
def list_machine_requests(
    principal: PrincipalDep,
    ctx: ContextDep,
    provider: Annotated[
        str | None, Query(description="Only this provider instance.", pattern=NO_NUL)
    ] = None,
    label: Annotated[
        list[Annotated[str, Query(pattern=NO_NUL)]] | None,
        Query(description=f"KEY=VALUE; repeat to require several labels (at most "
                          f"{MAX_LABEL_FILTERS})."),
    ] = None,
    stage: Annotated[Stage | None, Query(description="Only requests in this stage.")] = None,
    limit: PageLimit = MAX_PAGE,
    after: PageAfter = None,
) -> MachineRequestList:
    """Requests visible to the token (its providers only), ordered by id; gone ones
    are left out unless ``stage=gone``. Page with ``limit`` and ``after``."""
    if provider is not None:
        principal.require_provider(provider)
    if len(label or []) > MAX_LABEL_FILTERS:
        field_error(("query", "label"), f"at most {MAX_LABEL_FILTERS} label filters")
    selector: dict[str, str] = {}
    for index, item in enumerate(label or []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            field_error(("query", "label", index), "expected KEY=VALUE")
        selector[key] = value
    records = ctx.store.list_requests(
        provider=provider,
        # In the query, not after it, so that a page of a scoped token is full.
        providers=None if principal.all_providers else principal.providers,
        labels=selector or None,
        stages=None if stage is None else [stage],
        after=after,
        limit=limit,
    )
    more = len(records) == limit
    return MachineRequestList(
        items=[request_view(r) for r in records],
        next=records[-1].request.id if more else None,
    )


@router.get(
    "/{request_id}",
    response_model=MachineRequestView,
    summary="Get one machine request",
    responses={**AUTH_RESPONSES, **NOT_FOUND},
)
def get_machine_request(
    request_id: RequestId, principal: PrincipalDep, ctx: ContextDep
) -> MachineRequestView:
    """The request's stage, step, machine and last error."""
    return request_view(visible_record(ctx, principal, request_id))


@router.get(
    "/{request_id}/events",
    response_model=list[EventView],
    summary="A request's event log",
    responses={**AUTH_RESPONSES, **NOT_FOUND},
)
def machine_request_events(
    request_id: RequestId, principal: PrincipalDep, ctx: ContextDep,
    offset: Annotated[int, Query(ge=0, le=2**31, description="Skip this many events (the "
                                 "log only grows, so a position stays put).")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="At most this many events; "
                                "a full page means more may follow at offset + limit.")
                     ] = MAX_PAGE,
) -> list[EventView]:
    """What happened to the request, oldest first (secrets are never logged here), in
    pages of ``limit`` from ``offset``."""
    visible_record(ctx, principal, request_id)
    return [EventView(at=e.at, message=e.message)
            for e in ctx.store.events(request_id, offset=offset, limit=limit)]


@router.delete(
    "/{request_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=MachineRequestView,
    summary="Delete a machine request (its machine is removed, then it is gone)",
    responses={**AUTH_RESPONSES, **NOT_FOUND},
)
def delete_machine_request(
    request_id: RequestId, principal: PrincipalDep, ctx: ContextDep
) -> MachineRequestView:
    """Move the request to ``deprovisioning``; once the machine is removed the
    request is ``gone`` and reads return 404. Idempotent."""
    visible_record(ctx, principal, request_id)
    try:
        record = ctx.store.request_deletion(request_id)
    except KeyError:
        raise not_found(request_id) from None
    ctx.wake()
    return request_view(record)


@router.post(
    "/{request_id}/retry",
    response_model=MachineRequestView,
    summary="Put a failed request back to work (idempotent)",
    responses={**AUTH_RESPONSES, **NOT_FOUND,
               409: {"model": Problem, "description": "The request is not failed (nor "
                     "pending, as one retried already is)."}},
)
def retry_machine_request(
    request_id: RequestId, principal: PrincipalDep, ctx: ContextDep
) -> MachineRequestView:
    """A failed request goes back to ``pending`` at the step it failed in, its error
    and attempts cleared (what it made so far is kept: steps find it). One whose
    machine vanished after it ran starts its steps over and gets a new machine.
    A pending request is answered unchanged; any other stage is a 409."""
    visible_record(ctx, principal, request_id)
    try:
        record = retry_failed(ctx.store, request_id,
                              datetime.fromtimestamp(ctx.runtime.clock(), UTC))
    except KeyError:
        raise not_found(request_id) from None
    except (Conflict, StaleRecord) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    ctx.wake()
    return request_view(record)


@router.post(
    "/{request_id}/forget",
    response_model=ForgetResult,
    summary="Force-forget a request without calling its provider",
    responses={**AUTH_RESPONSES, **NOT_FOUND, **BAD_BODY},
)
def forget_machine_request(
    request_id: RequestId, body: ForgetBody, principal: PrincipalDep, ctx: ContextDep
) -> ForgetResult:
    """Remove the request from the store WITHOUT touching its provider.

    The escape hatch for a provider that is gone for good: any machine it had is
    left where it is, as ``left_behind`` says (for bare metal: held until
    `talprov baremetal release` frees it). The token name and ``reason`` go to
    the audit log. Not idempotent: a second forget of the id is a 404.
    """
    record = ctx.store.get_request(request_id)
    # Out of scope looks like absent, as for reads (see visible_record).
    if record is None or not principal.allows_provider(record.request.provider):
        raise not_found(request_id)
    try:
        ctx.store.forget_request(request_id, actor=principal.name, reason=body.reason)
    except KeyError:
        raise not_found(request_id) from None
    # An operator action that leaves a machine behind unmanaged: worth a log line
    # (the reason stays in the audit table; it is free text).
    log.warning("request %s (provider %s) force-forgotten by token %r; its machine, if any, "
                "is no longer managed", request_id, record.request.provider, principal.name)
    # The instance's type decides the advice (`baremetal release`), as the CLI's
    # forget gives it; an instance no longer configured gets none.
    handle = ctx.handles.get(record.request.provider)
    kind = None if handle is None else handle.provider.type_name
    return ForgetResult(id=request_id, actor=principal.name, reason=body.reason,
                        left_behind=forgotten_leaves(record, kind))
