"""A token scoped to some providers cannot tell whether a set name is used in another
scope: its sets are stored under names derived from the ones it sends, exactly as
its request ids are (test_scoped_ids.py), so a name taken elsewhere and a free one
get the same answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from talprov.service.routes_requests import derived_request_id
from tests.helpers import Home
from tests.unit.service.conftest import OTHER, WRITE, Api, open_api

DERIVED = re.compile(r"^(?P<sent>[-a-z0-9]+)-[0-9a-f]{10}$")
SETS = "/v1/machine-request-sets"


def _set(name: str, count: int, provider: str = "other") -> dict[str, Any]:
    return {"name": name, "machine_count": count, "provider": provider,
            "talos_version": "v1.13.9"}


@pytest.fixture
def two_providers(home: Home) -> Iterator[Api]:
    """The idle service with a second provider instance, ``other`` (OTHER's scope)."""
    home.providers["other"] = {"type": "file", "path": home.cloud_path("other")}
    home.write_config()
    yield from open_api(home, workers=False)


def _shape(response: Any) -> tuple[int, str, int, list[str]]:
    body = response.json()
    found = DERIVED.match(body["name"])
    assert found is not None, body["name"]
    members = [re.sub(r"^.*-[0-9a-f]{10}-", "<set>-", m["id"]) for m in body["members"]]
    return response.status_code, found["sent"].replace("taken", "free"), \
        body["machine_count"], members


def test_taken_elsewhere_and_free_set_names_answer_alike(two_providers: Api) -> None:
    api = two_providers
    mine = api.request("POST", SETS, json=_set("taken", 1, provider="fake"), headers=WRITE)
    assert mine.status_code == 201
    taken = api.request("POST", SETS, json=_set("taken", 2), headers=OTHER)
    free = api.request("POST", SETS, json=_set("free", 2), headers=OTHER)
    assert _shape(taken) == _shape(free) == (201, "free", 2, ["<set>-0", "<set>-1"])
    assert taken.json()["name"] == derived_request_id("other", "taken")
    # The other scope's set is untouched, and the two are distinct sets.
    kept = api.request("GET", f"{SETS}/taken", headers=WRITE).json()
    assert (kept["provider"], kept["machine_count"]) == ("fake", 1)


def test_a_scoped_set_lives_under_its_derived_name(two_providers: Api) -> None:
    api = two_providers
    created = api.request("POST", SETS, json=_set("pool", 1), headers=OTHER)
    name = created.json()["name"]
    again = api.request("POST", SETS, json=_set("pool", 1), headers=OTHER)
    assert (again.status_code, again.json()["name"]) == (200, name)  # still idempotent
    assert api.request("GET", f"{SETS}/{name}", headers=OTHER).status_code == 200
    assert api.request("GET", f"{SETS}/pool", headers=OTHER).status_code == 404
    scaled = api.request("PATCH", f"{SETS}/{name}", json={"machine_count": 2}, headers=OTHER)
    assert scaled.json()["machine_count"] == 2
    # PUT names the set by its derived name; the body may keep the name it was sent as.
    replaced = api.request("PUT", f"{SETS}/{name}", json=_set("pool", 3), headers=OTHER)
    assert (replaced.status_code, replaced.json()["machine_count"]) == (200, 3)
    listed = api.request("GET", SETS, headers=OTHER).json()["items"]
    assert [s["name"] for s in listed] == [name]
    assert api.request("DELETE", f"{SETS}/{name}", headers=OTHER).status_code == 202


def test_put_cannot_probe_names_of_another_scope(two_providers: Api) -> None:
    api = two_providers
    api.request("POST", SETS, json=_set("taken", 1, provider="fake"), headers=WRITE)
    taken = api.request("PUT", f"{SETS}/taken", json=_set("taken", 2), headers=OTHER)
    free = api.request("PUT", f"{SETS}/free", json=_set("free", 2), headers=OTHER)
    assert taken.status_code == free.status_code == 404
    assert taken.json()["detail"].replace("taken", "free") == free.json()["detail"]
    assert "fake" not in taken.text


def test_names_of_the_tokens_own_scope_keep_working(two_providers: Api) -> None:
    # A set stored under the name as sent (by an all-providers token, or before this
    # rule) on the token's own provider is still the token's set of that name.
    api = two_providers
    api.request("POST", SETS, json=_set("legacy", 1), headers=WRITE)
    again = api.request("POST", SETS, json=_set("legacy", 1), headers=OTHER)
    assert (again.status_code, again.json()["name"]) == (200, "legacy")


def test_a_scoped_token_may_send_names_that_fit_with_the_suffix(two_providers: Api) -> None:
    api = two_providers
    fits = api.request("POST", SETS, json=_set("s" * 41, 0), headers=OTHER)
    assert fits.status_code == 201
    assert len(fits.json()["name"]) == 52
    too_long = api.request("POST", SETS, json=_set("s" * 42, 0), headers=OTHER)
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["loc"] == ["body", "name"]
