"""The status page's routes under ``/ui``: read-only pages, sign-in and live changes.

Pages are rendered on the server (Jinja2). Each page marks one live region;
``ui.js`` polls ``/ui/changes`` with the newest change time it has seen and
either swaps the changed table rows in place or re-fetches the region
(``?fragment=1``). A poll reads only the requests changed since then (an index
on ``updated_at``), so its cost follows the changes, not the number of requests.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from talprov import __version__
from talprov.providers.labels import LABEL_CLUSTER, LABEL_SET
from talprov.providers.types import Stage
from talprov.service.auth import Principal
from talprov.service.context import ServiceContext, service_context
from talprov.service.routes_requests import MAX_LABEL_FILTERS
from talprov.service.ui import session, views
from talprov.store.browse import BrowseFilter

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/ui", include_in_schema=False)
FRAGMENTS = frozenset(t for t in templates.env.list_templates() if t.startswith("_"))
ContextDep = Annotated[ServiceContext, Depends(service_context)]
PAGE_SIZE = 50
#: How far back a poll looks before its watermark: a transaction that stamped its
#: rows earlier may commit after a later one; the browser drops what it has seen.
POLL_OVERLAP = timedelta(seconds=2)
#: Changes one poll hands out; with more the page re-fetches its region instead.
POLL_LIMIT = 200
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class SignInRequired(Exception):
    """No valid session: pages answer with a redirect to the sign-in form."""


def ui_principal(request: Request) -> Principal:
    principal = session.session_principal(request)
    if principal is None:
        raise SignInRequired
    return principal


PrincipalDep = Annotated[Principal, Depends(ui_principal)]


def _since(moment: datetime) -> str:
    """A short "how long ago" for people; the exact time goes in a title."""
    seconds = int((datetime.now(UTC) - moment).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def _stamp(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _clock(moment: datetime | None, short: bool = False) -> str:
    """A UTC time people read: the date and second, or (``short``) the time to the ms."""
    if moment is None:
        return "–"
    moment = moment.astimezone(UTC)
    if short:
        return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _watermark(ctx: ServiceContext, principal: Principal) -> str:
    """Where a page's live updates start: the newest change the page can show."""
    return _stamp(ctx.store.newest_change(providers=views.scope(principal)))


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


templates.env.filters["ago"] = _since
templates.env.filters["stamp"] = _stamp
templates.env.filters["seconds"] = _seconds
templates.env.filters["clock"] = _clock
templates.env.globals["version"] = __version__
templates.env.globals["LABEL_CLUSTER"] = LABEL_CLUSTER
templates.env.globals["LABEL_SET"] = LABEL_SET


def render(request: Request, name: str, context: dict[str, Any], *,
           principal: Principal | None, status_code: int = 200) -> Response:
    """A page, or only its live region when the browser asks with ``fragment=1``."""
    token = session.csrf_token(request)
    fragment = request.query_params.get("fragment") == "1"
    # Only pages with a live region have a fragment; the others answer whole.
    page = f"_{name}" if fragment and f"_{name}" in FRAGMENTS else name
    response = templates.TemplateResponse(
        request, page, {**context, "principal": principal, "csrf": token},
        status_code=status_code, headers=SECURITY_HEADERS,
    )
    session.set_csrf_cookie(request, response, token)
    return response


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request) -> Response:
    return render(request, "sign_in.html", {"problem": None}, principal=None)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    """Check the token and keep it in the session cookie; 401 with the form again
    when it is not a configured token (the message never says which part was wrong)."""
    fields = await session.checked_form(request)
    token = fields.get("token", "").strip()
    response = RedirectResponse("/ui", status_code=status.HTTP_303_SEE_OTHER)
    if not token or not await run_in_threadpool(session.open_session, request, response, token):
        return render(request, "sign_in.html", {"problem": "That token is not valid."},
                      principal=None, status_code=status.HTTP_401_UNAUTHORIZED)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """End the session in the store (a copy of the cookie stops working) and clear it."""
    await session.checked_form(request)
    response = RedirectResponse("/ui/sign-in", status_code=status.HTTP_303_SEE_OTHER)
    await run_in_threadpool(session.end_session, request, response)
    return response


@router.get("", response_class=HTMLResponse)
def overview_page(request: Request, principal: PrincipalDep, ctx: ContextDep) -> Response:
    data = views.overview(ctx, principal)
    return render(request, "overview.html", {"view": data, "stages": views.STAGES,
                                             "since": _stamp(data.watermark)},
                  principal=principal)


@router.get("/clusters", response_class=HTMLResponse)
def clusters_page(request: Request, principal: PrincipalDep, ctx: ContextDep) -> Response:
    since = _watermark(ctx, principal)
    return render(request, "clusters.html",
                  {"clusters": views.clusters(ctx, principal, request.app.state.ui_plans),
                   "since": since},
                  principal=principal)


@router.get("/clusters/{name}", response_class=HTMLResponse)
def cluster_page(name: str, request: Request, principal: PrincipalDep,
                 ctx: ContextDep) -> Response:
    since = _watermark(ctx, principal)
    view = views.cluster(ctx, principal, name, plans=request.app.state.ui_plans,
                         with_events=True)
    if view is None:
        return _not_found(request, principal, f"cluster {name}")
    return render(request, "cluster.html", {"cluster": view, "since": since},
                  principal=principal)


def _label_filter(values: list[str]) -> tuple[dict[str, str], str | None]:
    labels: dict[str, str] = {}
    for item in values:
        if not item.strip():
            continue
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            return labels, f"label filter {item!r}: expected KEY=VALUE"
        labels[key] = value
    return labels, None


@router.get("/requests", response_class=HTMLResponse)
def requests_page(
    request: Request, principal: PrincipalDep, ctx: ContextDep,
    q: Annotated[str, Query(max_length=200)] = "",
    provider: Annotated[str, Query(max_length=255)] = "",
    stage: Annotated[str, Query(max_length=32)] = "",
    label: Annotated[list[str] | None, Query(max_length=MAX_LABEL_FILTERS)] = None,
    cluster: Annotated[str, Query(max_length=255)] = "",
    set_name: Annotated[str, Query(alias="set", max_length=255)] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    """The filterable table of requests, :data:`PAGE_SIZE` to a page."""
    since = _watermark(ctx, principal)
    labels, problem = _label_filter(label or [])
    if cluster:
        labels[LABEL_CLUSTER] = cluster
    if set_name:
        labels[LABEL_SET] = set_name
    stage_value = Stage(stage) if stage in {s.value for s in Stage} else None
    if stage and stage_value is None:
        problem = f"unknown stage {stage!r}"
    wanted = BrowseFilter(
        provider=provider or None, stage=stage_value, labels=labels or None,
        text=q.strip() or None,
        providers=views.scope(principal),
    )
    rows, total = ctx.store.browse_requests(wanted, offset=(page - 1) * PAGE_SIZE,
                                            limit=PAGE_SIZE)
    shown = {"q": q, "provider": provider, "stage": stage, "label": " ".join(label or []),
             "cluster": cluster, "set": set_name}
    query = [(k, v) for k, v in shown.items() if v and k != "label"]
    query += [("label", v) for v in label or [] if v]
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return render(request, "requests.html", {
        "rows": rows, "total": total, "page": page, "pages": pages, "shown": shown,
        "problem": problem, "stages": views.STAGES, "since": since,
        "providers": views.visible_providers(ctx, principal),
        "page_link": lambda n: "/ui/requests?" + urlencode([*query, ("page", n)]),
        "fragment_link": "/ui/requests?" + urlencode([*query, ("page", page),
                                                      ("fragment", 1)]),
    }, principal=principal)


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(request_id: str, request: Request, principal: PrincipalDep,
                 ctx: ContextDep) -> Response:
    since = _watermark(ctx, principal)
    detail = views.request_detail(ctx, principal, request_id)
    if detail is None:
        return _not_found(request, principal, f"request {request_id}")
    return render(request, "request.html", {"detail": detail, "since": since},
                  principal=principal)


def _not_found(request: Request, principal: Principal, what: str) -> Response:
    # Out of scope looks exactly like absent, as in the API.
    return render(request, "not_found.html", {"what": what}, principal=principal,
                  status_code=status.HTTP_404_NOT_FOUND)


@router.get("/changes")
def changes(
    request: Request, ctx: ContextDep,
    since: Annotated[str, Query(max_length=64)] = "",
) -> JSONResponse:
    """Requests changed since ``since`` (ISO time; a little before, see
    :data:`POLL_OVERLAP`) as table rows, and the new watermark. 401 without a session."""
    principal = session.session_principal(request)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="sign in again")
    try:
        moment = datetime.fromisoformat(since) if since else None
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail="since: expected an ISO time") from None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment is not None and moment - datetime.min.replace(tzinfo=UTC) < POLL_OVERLAP:
        moment = None  # before anything was recorded: everything is new
    rows = ctx.store.changed_since(
        None if moment is None else moment - POLL_OVERLAP,
        providers=views.scope(principal),
        limit=POLL_LIMIT,
    )
    row_template = templates.env.get_template("_row.html")
    items = [{"id": row.id, "updated": _stamp(row.updated_at),
              "html": row_template.render(row=row)} for row in rows]
    newest = max((row.updated_at for row in rows), default=moment)
    return JSONResponse({"watermark": _stamp(newest), "items": items,
                         "more": len(rows) >= POLL_LIMIT}, headers=SECURITY_HEADERS)
