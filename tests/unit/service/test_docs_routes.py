"""docs/service.md read as an Omni-style client reads it: every route it lists is
one the service serves, with the documented method, and every route the
service serves for API clients is listed; the fields it names for a request
are the ones a GET answers; every status a route declares is explained."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.routing import APIRoute, iter_route_contexts

from tests.unit.service.conftest import WRITE, Api, request_body

DOC = Path(__file__).parents[3] / "docs" / "service.md"
# "| `POST /v1/machine-requests/{id}/retry` | ..." and "| `GET /healthz` | ...".
_ROUTE_ROW = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)[^`]*` \|", re.M)
_STATUS_ROW = re.compile(r"^\| (\d{3}) \|", re.M)


def section(title: str) -> str:
    """The text of docs/service.md's ``## title`` section, up to the next one."""
    text = DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def documented_routes() -> set[tuple[str, str]]:
    # The doc writes {id} where the code names the parameter request_id.
    return {(method, re.sub(r"\{[^}]+\}", "{}", path))
            for method, path in _ROUTE_ROW.findall(section("Endpoints"))}


def served_routes(api: Api) -> set[tuple[str, str]]:
    """(method, path) of the routes in the OpenAPI document (the API, not the UI)."""
    served = set()
    for context in iter_route_contexts(api.client.app.routes):  # type: ignore[attr-defined]
        route = context.original_route
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in route.methods or ():
                served.add((method, re.sub(r"\{[^}]+\}", "{}", str(context.path))))
    return served


def test_the_documented_routes_are_the_served_ones(idle_api: Api) -> None:
    documented = documented_routes()
    assert ("POST", "/v1/machine-requests") in documented  # the table parsing works
    served = served_routes(idle_api)
    # /ui is a page for people, documented in ui.md; listed here as a pointer.
    assert documented - {("GET", "/ui")} == served


def test_the_documented_request_fields_are_the_answered_ones(idle_api: Api) -> None:
    row = re.search(r"^\| `GET /v1/machine-requests/\{id\}` \| one request: ([^|]+)\|",
                    section("Endpoints"), re.M)
    assert row is not None
    documented = {name.strip(" `") for name in row.group(1).split(",")}
    created = idle_api.request("POST", "/v1/machine-requests", json=request_body("doc-1"),
                               headers=WRITE)
    assert created.status_code == 201, created.text
    answered = idle_api.request("GET", "/v1/machine-requests/doc-1", headers=WRITE).json()
    assert documented == set(answered)


def test_every_declared_status_is_explained(idle_api: Api) -> None:
    explained = set(_STATUS_ROW.findall(section("Authentication and errors"))) | {
        "200", "201", "202", "204"}
    declared = {status
                for path in idle_api.client.app.openapi()["paths"].values()  # type: ignore[attr-defined]
                for operation in path.values()
                for status in operation.get("responses", {})}
    assert "422" in declared  # the OpenAPI walk works
    assert declared <= explained


def test_a_token_of_another_scheme_is_told_so(idle_api: Api) -> None:
    # docs: 401 for "no token, not a bearer token, or an unknown token"; a client
    # sending HTTP Basic was told "missing bearer token", as if it had sent nothing.
    sent = idle_api.request("GET", "/v1/providers", headers={"Authorization": "Basic YTpi"})
    assert sent.status_code == 401
    assert sent.json() == {"detail": "the Authorization header is not a bearer token"}
    missing = idle_api.request("GET", "/v1/providers")
    assert missing.json() == {"detail": "missing bearer token"}


def test_the_409_row_names_a_set_being_deleted(idle_api: Api) -> None:
    # QA: POST, PUT and PATCH of a set being deleted all answer 409, which the
    # doc's table of statuses did not say.
    from tests.unit.service.test_sets import set_body

    made = idle_api.request("POST", "/v1/machine-request-sets", json=set_body("dl", 1),
                            headers=WRITE)
    assert made.status_code == 201, made.text
    deleted = idle_api.request("DELETE", "/v1/machine-request-sets/dl", headers=WRITE)
    assert deleted.status_code == 202, deleted.text
    answers = [
        idle_api.request("POST", "/v1/machine-request-sets", json=set_body("dl", 1),
                         headers=WRITE),
        idle_api.request("PUT", "/v1/machine-request-sets/dl", json=set_body("dl", 2),
                         headers=WRITE),
        idle_api.request("PATCH", "/v1/machine-request-sets/dl", json={"machine_count": 2},
                         headers=WRITE),
    ]
    assert [(a.status_code, a.json()["detail"]) for a in answers] == [
        (409, "set dl is being deleted")] * 3
    row = re.search(r"^\| 409 \| ([^\n]+) \|$", section("Authentication and errors"), re.M)
    assert row is not None
    assert ("a set being deleted, to any POST, PUT or PATCH of it (`set dl is being "
            "deleted`") in row.group(1)
