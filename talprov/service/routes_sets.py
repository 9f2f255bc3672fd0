"""``/v1/machine-request-sets``: N identical requests kept at ``machine_count``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Response, status

from talprov.errors import Conflict
from talprov.service.auth import Principal, PrincipalDep, TokenRoute
from talprov.service.context import (
    ServiceContext,
    build_request,
    field_error,
    service_context,
)
from talprov.service.models import (
    SET_NAME_PATTERN,
    MachineRequestSetCreate,
    MachineRequestSetList,
    MachineRequestSetReplace,
    MachineRequestSetScale,
    MachineRequestSetView,
    Problem,
    SetMember,
)
from talprov.service.routes_requests import (
    AUTH_RESPONSES,
    BAD_BODY,
    INVALID,
    MAX_PAGE,
    NOT_FOUND,
    SCOPED_SUFFIX_HEX,
    PageAfter,
    PageLimit,
    derived_request_id,
    scoped_name,
)
from talprov.sets import RequestSet, reconcile_set, set_fingerprint
from talprov.store.errors import StaleRecord

router = APIRouter(prefix="/v1/machine-request-sets", tags=["machine-request-sets"],
                   route_class=TokenRoute)
ContextDep = Annotated[ServiceContext, Depends(service_context)]
SetName = Annotated[str, Path(pattern=SET_NAME_PATTERN, max_length=52)]


def now_utc() -> datetime:
    return datetime.now(UTC)


def set_view(ctx: ServiceContext, request_set: RequestSet) -> MachineRequestSetView:
    return MachineRequestSetView.model_validate(
        request_set.public_view(ctx.sets.members(request_set)))


def _visible_set(ctx: ServiceContext, principal: Principal, name: str) -> RequestSet:
    found = ctx.sets.get(name)
    # A set of a provider the token may not use is answered like a missing one,
    # so that a scoped token cannot probe other scopes' set names.
    if found is None or not principal.allows_provider(found.template.provider):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"set {name} not found")
    return found


def _stored_labels(ctx: ServiceContext, name: str) -> dict[str, str] | None:
    """The template labels of the set ``name``, None when there is none or it is
    being deleted (:func:`~talprov.service.context.check_labels`)."""
    found = ctx.sets.get(name)
    return None if found is None or found.deleting else dict(found.template.labels)


#: Longest set name a scoped token may send: the derived name must fit in 52 characters.
SCOPED_SET_NAME_MAX = 52 - 1 - SCOPED_SUFFIX_HEX


def scoped_set_name(ctx: ServiceContext, principal: Principal,
                    body: MachineRequestSetCreate) -> str:
    """The name the set ``body`` of ``principal`` is stored under: as for request ids,
    a scoped token's sets live under a name derived per provider instance
    (:func:`~talprov.service.routes_requests.scoped_name`)."""
    def owner(name: str) -> str | None:
        found = ctx.sets.get(name)
        return None if found is None else found.template.provider

    return scoped_name(principal, body.name, body.provider, owner, field="name",
                       longest=SCOPED_SET_NAME_MAX)


def _require_name_free_or_visible(principal: Principal, existing: RequestSet) -> None:
    """409 when the name belongs to a set of a provider the token may not use.

    Only a token of all providers, or a derived name that an all-providers
    token happened to take, can meet this; the answer says no more than that
    (not the provider, not the set's state).
    """
    if not principal.allows_provider(existing.template.provider):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"set name {existing.name} is already in use")


def _apply(
    ctx: ServiceContext, request_set: RequestSet, *, create_only: bool = False
) -> MachineRequestSetView:
    stored = ctx.sets.put(request_set, create_only=create_only)
    reconcile_set(ctx.sets, stored)
    ctx.wake()
    return set_view(ctx, stored)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MachineRequestSetView,
    summary="Create a machine request set (idempotent on name)",
    responses={
        200: {"model": MachineRequestSetView, "description": "Same body as the existing set."},
        409: {"model": Problem, "description": "The name is in use with a different body."},
        **AUTH_RESPONSES, **BAD_BODY,
    },
)
def create_set(
    body: MachineRequestSetCreate, principal: PrincipalDep, ctx: ContextDep, response: Response
) -> MachineRequestSetView:
    """Create the set and its first ``machine_count`` requests ``<name>-<index>``.

    The same body again returns the set with 200; a different one is a 409 (use
    PUT to change a set, PATCH to scale it).
    """
    principal.require_provider(body.provider)
    name = scoped_set_name(ctx, principal, body)
    template = build_request(ctx, principal, body, f"{name}-0",
                             stored_labels=lambda: _stored_labels(ctx, name))
    fingerprint = set_fingerprint(template, body.machine_count)
    existing = ctx.sets.get(name)
    if existing is None:
        now = now_utc()
        try:
            return _apply(ctx, RequestSet(name, template, body.machine_count, False,
                                          fingerprint, now, now), create_only=True)
        except StaleRecord:
            # Another creator got there between our read and our write.
            existing = ctx.sets.get(name)
            if existing is None:
                raise HTTPException(status.HTTP_409_CONFLICT,
                                    detail=f"set {name} changed meanwhile; retry") from None
    _require_name_free_or_visible(principal, existing)
    if existing.deleting:  # whatever its body: the name frees up once it is gone
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"set {name} is being deleted")
    if existing.fingerprint != fingerprint:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"set {name} already exists with a different body")
    response.status_code = status.HTTP_200_OK
    return set_view(ctx, existing)


@router.put(
    "/{name}",
    response_model=MachineRequestSetView,
    summary="Create or replace a set (template and size)",
    responses={
        201: {"model": MachineRequestSetView, "description": "The set did not exist: created."},
        **AUTH_RESPONSES, **BAD_BODY, 409: {"model": Problem},
    },
)
def replace_set(
    name: SetName, body: MachineRequestSetReplace, principal: PrincipalDep, ctx: ContextDep,
    response: Response,
) -> MachineRequestSetView:
    """Replace the set's template and size (200), or create it (201). Members that
    exist keep the template they were created from; new members use the new one.
    The provider cannot change. The body needs no ``name``: the path names the set.
    A token scoped to some providers replaces only its own sets (404 otherwise, as
    for a free name: it creates sets with POST); the body may carry the name it
    sent when creating the set."""
    if body.name is not None and body.name != name and (
            principal.all_providers or derived_request_id(body.provider, body.name) != name):
        # A malformed call, not a clash with stored state: 422 naming the field.
        field_error(("body", "name"), "must equal the set name in the path")
    existing = None if principal.all_providers else _visible_set(ctx, principal, name)
    template = build_request(ctx, principal, body, f"{name}-0",
                             stored_labels=lambda: _stored_labels(ctx, name))
    existing = existing or ctx.sets.get(name)
    now = now_utc()
    created = now
    if existing is not None:
        _require_name_free_or_visible(principal, existing)
        if existing.template.provider != template.provider:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                detail="a set's provider cannot change; create another set")
        if existing.deleting:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"set {name} is being deleted")
        created = existing.created_at
    else:
        response.status_code = status.HTTP_201_CREATED
    fingerprint = set_fingerprint(template, body.machine_count)
    return _apply(ctx, RequestSet(name, template, body.machine_count, False, fingerprint,
                                  created, now))


@router.patch(
    "/{name}",
    response_model=MachineRequestSetView,
    summary="Scale a set",
    responses={**AUTH_RESPONSES, **NOT_FOUND, **BAD_BODY, 409: {"model": Problem}},
)
def scale_set(
    name: SetName, body: MachineRequestSetScale, principal: PrincipalDep, ctx: ContextDep
) -> MachineRequestSetView:
    """Change ``machine_count``. Scale-down removes requests marked for deletion
    first, then unallocated ones, then workers before control planes, then the oldest."""
    existing = _visible_set(ctx, principal, name)
    try:
        scaled = existing.scaled(body.machine_count, now_utc())
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    # Written as a new version, not at the version read: a scale is the last word.
    return _apply(ctx, replace(scaled, version=None))


@router.get("", response_model=MachineRequestSetList, summary="List sets",
            responses={**AUTH_RESPONSES, **INVALID})
def list_sets(
    principal: PrincipalDep,
    ctx: ContextDep,
    limit: PageLimit = MAX_PAGE,
    after: PageAfter = None,
) -> MachineRequestSetList:
    """Sets of the providers the token may see, ordered by name, in pages of ``limit``."""
    found = ctx.sets.page(limit=limit, after=after,
                          instances=None if principal.all_providers else principal.providers)
    return MachineRequestSetList(items=[set_view(ctx, s) for s in found],
                                 next=found[-1].name if len(found) == limit else None)


@router.get("/{name}", response_model=MachineRequestSetView, summary="Get a set",
            responses={**AUTH_RESPONSES, **NOT_FOUND})
def get_set(name: SetName, principal: PrincipalDep, ctx: ContextDep) -> MachineRequestSetView:
    """The set, its size and its members' stages."""
    return set_view(ctx, _visible_set(ctx, principal, name))


@router.delete(
    "/{name}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=MachineRequestSetView,
    summary="Delete a set and all its requests",
    responses={**AUTH_RESPONSES, **NOT_FOUND},
)
def delete_set(name: SetName, principal: PrincipalDep, ctx: ContextDep) -> MachineRequestSetView:
    """Delete every member; the set disappears once they are all gone. Idempotent."""
    existing = _visible_set(ctx, principal, name)
    deleting = ctx.sets.put(existing.for_deletion(now_utc()))
    view = set_view(ctx, deleting)
    reconcile_set(ctx.sets, deleting)
    ctx.wake()
    view.members = [SetMember(id=m.request.id, stage=m.stage)
                    for m in ctx.sets.members(deleting)]
    return view
