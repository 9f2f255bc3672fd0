"""A token scoped to some providers cannot enumerate the ids of other scopes
(issue 15, hole 3): its request ids are derived from the ones it sends, so an id
taken elsewhere and a free one get the same kind of answer."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from talprov.service.routes_requests import derived_request_id
from tests.helpers import Home
from tests.unit.service.conftest import OTHER, WRITE, Api, open_api, request_body

DERIVED = re.compile(r"^(?P<sent>[-a-z0-9]+)-[0-9a-f]{10}$")


def _other_body(request_id: str) -> dict[str, object]:
    return {**request_body(request_id), "provider": "other"}


@pytest.fixture
def two_providers(home: Home) -> Iterator[Api]:
    """The idle service with a second provider instance, ``other`` (OTHER's scope)."""
    home.providers["other"] = {"type": "file", "path": home.cloud_path("other")}
    home.write_config()
    yield from open_api(home, workers=False)


def test_taken_elsewhere_and_free_ids_answer_alike(two_providers: Api) -> None:
    api = two_providers
    assert api.request("POST", "/v1/machine-requests", json=request_body("hid-1"),
                       headers=WRITE).status_code == 201
    taken = api.request("POST", "/v1/machine-requests", json=_other_body("hid-1"),
                        headers=OTHER)
    free = api.request("POST", "/v1/machine-requests", json=_other_body("free-1"),
                       headers=OTHER)
    assert taken.status_code == free.status_code == 201, (taken.text, free.text)
    assert taken.json().keys() == free.json().keys()
    for answer, sent in ((taken, "hid-1"), (free, "free-1")):
        match = DERIVED.match(answer.json()["id"])
        assert match is not None
        assert match["sent"] == sent
        assert answer.json()["id"] == derived_request_id("other", sent)
    # A retry is idempotent on the derived id; the token reads it by that id.
    again = api.request("POST", "/v1/machine-requests", json=_other_body("hid-1"),
                        headers=OTHER)
    assert (again.status_code, again.json()["id"]) == (200, taken.json()["id"])
    assert api.request("GET", f"/v1/machine-requests/{taken.json()['id']}",
                       headers=OTHER).status_code == 200
    # The other scope's request is untouched.
    theirs = api.request("GET", "/v1/machine-requests/hid-1", headers=WRITE).json()
    assert theirs["provider"] == "fake"


def test_ids_of_the_tokens_own_scope_keep_working(two_providers: Api) -> None:
    """A store from before derived ids: a request of the token's own provider
    under the id as sent is found again, not duplicated."""
    api = two_providers
    assert api.request("POST", "/v1/machine-requests", json=_other_body("old-1"),
                       headers=WRITE).status_code == 201
    again = api.request("POST", "/v1/machine-requests", json=_other_body("old-1"),
                        headers=OTHER)
    assert (again.status_code, again.json()["id"]) == (200, "old-1")
    listed = api.request("GET", "/v1/machine-requests", headers=OTHER).json()["items"]
    assert [item["id"] for item in listed] == ["old-1"]


def test_a_scoped_token_may_send_ids_that_fit_with_the_suffix(two_providers: Api) -> None:
    api = two_providers
    longest = "a" * 52
    assert api.request("POST", "/v1/machine-requests", json=_other_body(longest),
                       headers=OTHER).status_code == 201
    too_long = api.request("POST", "/v1/machine-requests", json=_other_body("b" * 53),
                           headers=OTHER)
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["loc"] == ["body", "id"]


def test_a_body_without_id_gets_a_generated_one_scoped_like_a_sent_one(
        two_providers: Api) -> None:
    """README and docs/service.md: the id is generated when the body has none."""
    api = two_providers
    bodies = []
    for headers, body in ((WRITE, request_body("x")), (WRITE, request_body("x")),
                          (OTHER, _other_body("x"))):
        del body["id"]
        response = api.request("POST", "/v1/machine-requests", json=body, headers=headers)
        assert response.status_code == 201, response.text
        bodies.append(response.json())
    first, second, scoped = (b["id"] for b in bodies)
    # No id, no idempotency: each POST is a new request.
    assert first != second
    assert re.fullmatch(r"m-[0-9a-f]{10}", first), first
    # A scoped token's generated id is derived per provider instance, as a sent one is.
    match = DERIVED.match(scoped)
    assert match is not None, scoped
    assert re.fullmatch(r"m-[0-9a-f]{10}", match["sent"]), scoped
    assert scoped == derived_request_id("other", match["sent"])
    for request_id, headers in ((first, WRITE), (scoped, OTHER)):
        assert api.request("GET", f"/v1/machine-requests/{request_id}",
                           headers=headers).status_code == 200
