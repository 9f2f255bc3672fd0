"""Paging GET /v1/machine-requests with limit and after."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from talprov.providers.types import MachineRequest
from tests.helpers import WORKER_CONFIG
from tests.unit.service.conftest import READ, WRITE, Api, request_body


def pages(api: Api, headers: dict[str, str], limit: int, **query: str) -> list[list[str]]:
    found: list[list[str]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit, **query}
        if after is not None:
            params["after"] = after
        body = api.request("GET", "/v1/machine-requests", params=params, headers=headers).json()
        found.append([item["id"] for item in body["items"]])
        after = body["next"]
        if after is None:
            return found


def test_pages_cover_the_list_once_in_order(idle_api: Api) -> None:
    ids = [f"p-{n}" for n in range(7)]
    for rid in reversed(ids):
        assert idle_api.request("POST", "/v1/machine-requests", json=request_body(rid),
                                headers=WRITE).status_code == 201
    assert pages(idle_api, WRITE, 3) == [ids[0:3], ids[3:6], ids[6:7]]
    assert pages(idle_api, WRITE, 7) == [ids, []]
    assert pages(idle_api, WRITE, 2, label="role=worker")[0] == ids[0:2]
    whole = idle_api.request("GET", "/v1/machine-requests", headers=WRITE).json()
    assert [i["id"] for i in whole["items"]] == ids
    assert whole["next"] is None


def test_a_scoped_tokens_pages_are_full_of_its_own_requests(idle_api: Api) -> None:
    # Requests of a provider outside the read token's scope sort first: filtering
    # them out after the query would leave its first page empty.
    for n in range(5):
        idle_api.ctx.store.create_request(MachineRequest(
            id=f"a-hidden-{n}", provider="other", talos_version="v1.13.9",
            machine_config=SecretStr(WORKER_CONFIG)))
    for n in range(3):
        idle_api.request("POST", "/v1/machine-requests", json=request_body(f"b-seen-{n}"),
                         headers=WRITE)
    assert pages(idle_api, READ, 2) == [["b-seen-0", "b-seen-1"], ["b-seen-2"]]


def test_bad_paging_parameters_are_422_naming_them(idle_api: Api) -> None:
    for params, name in (({"limit": 0}, "limit"), ({"limit": 5000}, "limit"),
                         ({"after": "x" * 300}, "after")):
        response = idle_api.request("GET", "/v1/machine-requests", params=params,
                                    headers=WRITE)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", name]
