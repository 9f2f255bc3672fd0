"""Authorisation comes before the body (QA): a token that may not write got 400,
415 or 422 for a malformed body on a write route, and learnt how the route parses
what it may never send. Every write route of the app's own route table is tried,
so a route added later is covered without editing this file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import SecretStr

from talprov.service.auth import PrincipalDep, TokenVerifier, current_principal
from talprov.service.config import Access, TokenConfig
from tests.helpers import Home
from tests.unit.service.conftest import READ, Api, open_api

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

#: Bodies a read token must not get past: none, not JSON by type, not JSON by text,
#: JSON of the wrong shape, fields of the wrong type.
BODIES: dict[str, dict[str, Any]] = {
    "no body": {},
    "text/plain": {"content": b"id: x", "headers": {"Content-Type": "text/plain"}},
    "invalid JSON": {"content": b'{"id": ', "headers": {"Content-Type": "application/json"}},
    "not UTF-8": {"content": b'{"id": "\xff"}',
                  "headers": {"Content-Type": "application/json"}},
    "a JSON list": {"content": b"[]", "headers": {"Content-Type": "application/json"}},
    "wrong fields": {"json": {"id": 7, "replicas": "many", "unknown": True}},
}


def _uses(dependant: Dependant, call: object) -> bool:
    return dependant.call is call or any(_uses(d, call) for d in dependant.dependencies)


def token_write_routes(routes: list[Any]) -> Iterator[tuple[str, str]]:
    """(method, path) of every route that authenticates by bearer token and writes,
    routers included (FastAPI keeps an included router's routes behind one entry)."""
    for context in iter_route_contexts(routes):
        route = context.original_route
        if isinstance(route, APIRoute) and _uses(route.dependant, current_principal):
            for method in sorted((route.methods or set()) & WRITE_METHODS):
                yield method, str(context.path)


def filled(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


def test_the_route_table_has_the_write_routes_the_docs_name(idle_api: Api) -> None:
    # Guards the discovery below: if it found nothing, every other test would pass.
    found = set(token_write_routes(idle_api.client.app.routes))  # type: ignore[attr-defined]
    assert {("POST", "/v1/machine-requests"), ("DELETE", "/v1/machine-requests/{request_id}"),
            ("PATCH", "/v1/machine-request-sets/{name}")} <= found
    assert len(found) >= 8


@pytest.mark.parametrize("body", sorted(BODIES))
@pytest.mark.parametrize("path_value", ["r-1", "Not_An_Id"])
def test_a_read_token_gets_403_on_every_write_route_whatever_the_body(
        idle_api: Api, body: str, path_value: str) -> None:
    for method, path in token_write_routes(idle_api.client.app.routes):  # type: ignore[attr-defined]
        sent = dict(BODIES[body])
        sent["headers"] = {**sent.get("headers", {}), **READ}
        response = idle_api.request(method, filled(path, path_value), **sent)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json() == {"detail": "token 'dashboards' has read access only"}


@pytest.mark.parametrize("body", sorted(BODIES))
def test_no_token_gets_401_on_every_write_route_whatever_the_body(idle_api: Api,
                                                                  body: str) -> None:
    for method, path in token_write_routes(idle_api.client.app.routes):  # type: ignore[attr-defined]
        response = idle_api.request(method, filled(path, "r-1"), **BODIES[body])
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"



def test_an_oversized_body_is_413_before_the_token_is_looked_at(home: Home) -> None:
    # docs/service.md: the size announced by Content-Length is judged first.
    for api in open_api(home, workers=False, max_body_bytes=1024):
        big = b"{" + b" " * 4096 + b"}"
        for headers in (READ, {}):
            response = api.request("POST", "/v1/machine-requests", content=big,
                                   headers={**headers, "Content-Type": "application/json"})
            assert response.status_code == 413, response.text


def test_a_write_route_outside_a_token_route_router_still_refuses_a_read_token() -> None:
    # Review: with the per-endpoint checks gone, a write route declared on a router
    # without TokenRoute would have let a read token write; the dependency closes it.
    reader, writer = "r" * 40, "w" * 40
    router = APIRouter()  # no route_class

    @router.post("/plain")
    def plain(principal: PrincipalDep) -> dict[str, str]:
        return {"by": principal.name}

    @router.get("/plain")
    def look(principal: PrincipalDep) -> dict[str, str]:
        return {"by": principal.name}

    app = FastAPI()
    app.include_router(router)
    app.state.ctx = SimpleNamespace(tokens=TokenVerifier((
        TokenConfig(name="reader", value=SecretStr(reader)),
        TokenConfig(name="writer", value=SecretStr(writer), access=Access.WRITE))))
    client = TestClient(app)
    as_reader = {"Authorization": f"Bearer {reader}"}
    assert client.post("/plain", headers=as_reader).status_code == 403
    assert client.get("/plain", headers=as_reader).json() == {"by": "reader"}
    assert client.post("/plain", headers={"Authorization": f"Bearer {writer}"}).json() == {
        "by": "writer"}
