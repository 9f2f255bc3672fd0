"""Every list the API hands out is bounded: pages of at most 1000 items (issue 15, hole 1).

The machine-request list pages with ``limit``/``after`` (test_paging.py); the set
list does the same, a scoped token's pages are full of its own sets, and a
request's event log is read in pages of ``limit`` from ``offset``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import Home
from tests.unit.service.conftest import OTHER, WRITE, Api, open_api, request_body

SETS = "/v1/machine-request-sets"


def _set(name: str, provider: str) -> dict[str, Any]:
    return {"name": name, "machine_count": 0, "provider": provider, "talos_version": "v1.13.9"}


@pytest.fixture
def two_providers(home: Home) -> Iterator[Api]:
    home.providers["other"] = {"type": "file", "path": home.cloud_path("other")}
    home.write_config()
    yield from open_api(home, workers=False)


def _pages(api: Api, url: str, token: dict[str, str], limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"after": after} if after else {})}
        body = api.request("GET", url, params=params, headers=token).json()
        pages.append([item["name"] for item in body["items"]])
        after = body["next"]
        if after is None:
            return pages
        assert len(pages) < 20, "paging does not end"


def test_the_set_list_pages_by_name(two_providers: Api) -> None:
    api = two_providers
    for name in ("s-e", "s-a", "s-d", "s-b", "s-c"):
        assert api.request("POST", SETS, json=_set(name, "fake"), headers=WRITE).status_code == 201
    assert _pages(api, SETS, WRITE, 2) == [["s-a", "s-b"], ["s-c", "s-d"], ["s-e"]]
    whole = api.request("GET", SETS, headers=WRITE).json()
    assert ([s["name"] for s in whole["items"]], whole["next"]) == (
        ["s-a", "s-b", "s-c", "s-d", "s-e"], None)
    for bad in (0, 1001):
        response = api.request("GET", SETS, params={"limit": bad}, headers=WRITE)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "limit"]


def test_a_scoped_tokens_set_pages_are_full_of_its_own_sets(two_providers: Api) -> None:
    api = two_providers
    for index in range(6):
        api.request("POST", SETS, json=_set(f"n{index}", "fake" if index % 2 else "other"),
                    headers=WRITE)
    assert _pages(api, SETS, OTHER, 2) == [["n0", "n2"], ["n4"]]


def test_a_requests_event_log_is_read_in_pages(idle_api: Api) -> None:
    api = idle_api
    api.request("POST", "/v1/machine-requests", json=request_body("ev-1"), headers=WRITE)
    record = api.ctx.store.get_request("ev-1")
    assert record is not None
    events = [f"event {n}" for n in range(5)]
    api.ctx.store.save_progress(
        "ev-1", expected_version=record.version, stage=record.stage, step_index=0,
        step_name=None, state={}, error=None, attempts=0, next_attempt_at=None,
        step_started_at=None, infra_id=None, machine_uuid=None, addresses=[], events=events)
    url = "/v1/machine-requests/ev-1/events"
    whole = [e["message"] for e in api.request("GET", url, headers=WRITE).json()]
    assert whole[-5:] == [f"event {n}" for n in range(5)]
    offset = len(whole) - 4
    page = api.request("GET", url, params={"offset": offset, "limit": 2}, headers=WRITE).json()
    assert [e["message"] for e in page] == ["event 1", "event 2"]
    for params in ({"limit": 1001}, {"limit": 0}, {"offset": -1}):
        assert api.request("GET", url, params=params, headers=WRITE).status_code == 422


def test_the_status_page_shows_a_bounded_event_log(idle_api: Api,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from talprov.service.auth import Principal
    from talprov.service.config import Access
    from talprov.service.ui import views

    api = idle_api
    api.request("POST", "/v1/machine-requests", json=request_body("ev-2"), headers=WRITE)
    record = api.ctx.store.get_request("ev-2")
    assert record is not None
    api.ctx.store.save_progress(
        "ev-2", expected_version=record.version, stage=record.stage, step_index=0,
        step_name=None, state={}, error=None, attempts=0, next_attempt_at=None,
        step_started_at=None, infra_id=None, machine_uuid=None, addresses=[],
        events=[f"event {n}" for n in range(5)])
    monkeypatch.setattr(views, "EVENTS_SHOWN", 3)
    detail = views.request_detail(api.ctx, Principal("omni", ("*",), Access.WRITE), "ev-2")
    assert detail is not None
    assert (len(detail.events), detail.events_shown) == (3, 3)
