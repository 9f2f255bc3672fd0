"""A token scoped to other providers cannot tell whether a request or set exists.

Every by-id call on a resource outside the token's providers is answered exactly
as for an id that was never used (404, same body), so a scoped token cannot
probe another scope's ids or learn their provider.
"""

from __future__ import annotations

import logging

import pytest

from tests.unit.service.conftest import OTHER, READ, WRITE, Api, request_body


def _set_body(name: str, count: int) -> dict[str, object]:
    return {"name": name, "machine_count": count, "provider": "fake",
            "talos_version": "v1.13.9"}


def _same_answer(api: Api, method: str, url: str, hidden: str, **kwargs: object) -> None:
    """``url`` naming ``hidden`` (out of OTHER's scope) and naming an unused id get
    identical replies."""
    seen = api.request(method, url.format(hidden), headers=OTHER, **kwargs)
    absent = api.request(method, url.format("ghost"), headers=OTHER, **kwargs)
    assert seen.status_code == absent.status_code == 404, (method, url, seen.text)
    assert seen.json()["detail"].replace(hidden, "ghost") == absent.json()["detail"]
    assert "fake" not in seen.text


def test_requests_of_another_scope_look_absent(idle_api: Api) -> None:
    created = idle_api.request("POST", "/v1/machine-requests", json=request_body("hid-1"),
                               headers=WRITE)
    assert created.status_code == 201
    base = "/v1/machine-requests"
    _same_answer(idle_api, "GET", base + "/{}", "hid-1")
    _same_answer(idle_api, "GET", base + "/{}/events", "hid-1")
    _same_answer(idle_api, "DELETE", base + "/{}", "hid-1")
    _same_answer(idle_api, "POST", base + "/{}/forget", "hid-1", json={"reason": "probe"})
    # Nothing was changed by those calls, and the owner's view is untouched.
    own = idle_api.request("GET", f"{base}/hid-1", headers=WRITE).json()
    assert own["stage"] == "pending"
    assert idle_api.request("GET", f"{base}/hid-1", headers=READ).status_code == 200


def test_sets_of_another_scope_look_absent(idle_api: Api) -> None:
    created = idle_api.request("POST", "/v1/machine-request-sets", json=_set_body("hid", 1),
                               headers=WRITE)
    assert created.status_code == 201
    base = "/v1/machine-request-sets"
    _same_answer(idle_api, "GET", base + "/{}", "hid")
    _same_answer(idle_api, "PATCH", base + "/{}", "hid", json={"machine_count": 0})
    _same_answer(idle_api, "DELETE", base + "/{}", "hid")
    after = idle_api.request("GET", f"{base}/hid", headers=WRITE).json()
    assert (after["machine_count"], after["deleting"]) == (1, False)


def test_read_token_writing_is_still_403(idle_api: Api) -> None:
    """Access (read/write) does not depend on whether the id exists: 403 stays."""
    idle_api.request("POST", "/v1/machine-requests", json=request_body("ro-1"), headers=WRITE)
    for url in ("/v1/machine-requests/ro-1", "/v1/machine-requests/ghost-2"):
        assert idle_api.request("DELETE", url, headers=READ).status_code == 403


def test_force_forget_is_logged_with_actor(idle_api: Api,
                                           caplog: pytest.LogCaptureFixture) -> None:
    idle_api.request("POST", "/v1/machine-requests", json=request_body("fg-1"), headers=WRITE)
    with caplog.at_level(logging.WARNING, logger="talprov.service"):
        done = idle_api.request("POST", "/v1/machine-requests/fg-1/forget",
                                json={"reason": "account closed"}, headers=WRITE)
    assert done.status_code == 200
    assert done.json() == {
        "id": "fg-1", "actor": "omni", "reason": "account closed",
        "left_behind": "its provider was not called: any machine it had is left as it is, "
                       "and no talprov command removes it any more: remove it with the "
                       "provider's own tools if it is not to stay"}
    (line,) = [r.getMessage() for r in caplog.records if "force-forgotten" in r.getMessage()]
    assert "fg-1" in line
    assert "'omni'" in line


def test_unknown_provider_message_lists_only_the_tokens_providers(idle_api: Api) -> None:
    response = idle_api.request("POST", "/v1/machine-requests", headers=OTHER,
                                json={**request_body("np-1"), "provider": "other"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "provider"]
    assert "fake" not in response.text
