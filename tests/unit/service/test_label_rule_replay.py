"""A request stored under the label rule before Kubernetes' (revision 0009) is
created again by a client replaying its create unchanged: an idempotent create
answers 200, not 422 for the labels it was made with (review). A new request
with such labels, or a replay with other labels, follows the rule."""

from __future__ import annotations

from pydantic import SecretStr

from talprov.providers.types import MachineRequest
from tests.unit.service.conftest import WRITE, Api, request_body

#: Taken before revision 0009; Kubernetes' rule refuses both values.
OLD_LABELS = {"team": "blue team", "note": "x" * 80}


def _stored_before_the_rule(api: Api, request_id: str) -> None:
    # What the API made of request_body(request_id, labels=OLD_LABELS) then; the
    # request model itself never checked labels.
    body = {key: value for key, value in request_body(request_id).items()}
    api.ctx.store.create_request(MachineRequest.model_validate(
        {**body, "labels": OLD_LABELS, "machine_config": SecretStr("")}))


def test_replaying_the_create_of_a_request_with_old_labels_is_idempotent(
        idle_api: Api) -> None:
    _stored_before_the_rule(idle_api, "old-1")
    replay = idle_api.request("POST", "/v1/machine-requests", headers=WRITE,
                              json=request_body("old-1", labels=OLD_LABELS))
    assert replay.status_code == 200, replay.text
    assert replay.json()["id"] == "old-1"
    assert replay.json()["labels"] == OLD_LABELS


def test_old_labels_on_a_new_request_or_a_changed_replay_are_refused(idle_api: Api) -> None:
    _stored_before_the_rule(idle_api, "old-2")
    for request_id, labels in [("new-1", OLD_LABELS),
                               ("old-2", {**OLD_LABELS, "team": "red team"}),
                               ("old-2", {"team": "blue team"})]:
        answer = idle_api.request("POST", "/v1/machine-requests", headers=WRITE,
                                  json=request_body(request_id, labels=labels))
        assert answer.status_code == 422, (request_id, labels, answer.text)
        locs = [p["loc"] for p in answer.json()["detail"]]
        assert ["body", "labels", "team"] in locs, answer.text
        assert all("blue team" not in p["msg"] for p in answer.json()["detail"])
    assert idle_api.request("GET", "/v1/machine-requests/new-1",
                            headers=WRITE).status_code == 404


def test_a_replay_of_a_forgotten_request_is_a_new_request(idle_api: Api) -> None:
    _stored_before_the_rule(idle_api, "old-3")
    idle_api.ctx.store.forget_request("old-3", actor="test", reason="gone for good")
    answer = idle_api.request("POST", "/v1/machine-requests", headers=WRITE,
                              json=request_body("old-3", labels=OLD_LABELS))
    assert answer.status_code == 422, answer.text


def _set_stored_before_the_rule(api: Api, name: str) -> dict[str, object]:
    from datetime import UTC, datetime

    from talprov.sets import RequestSet, set_fingerprint

    body: dict[str, object] = {"name": name, "machine_count": 0, "provider": "fake",
                               "talos_version": "v1.13.9", "labels": OLD_LABELS}
    template = MachineRequest.model_validate(
        {"id": f"{name}-0", "provider": "fake", "talos_version": "v1.13.9",
         "labels": OLD_LABELS, "machine_config": SecretStr("")})
    now = datetime.now(UTC)
    api.ctx.sets.put(RequestSet(name, template, 0, False, set_fingerprint(template, 0),
                                now, now), create_only=True)
    return body


def test_replaying_a_set_with_old_labels_is_idempotent_and_a_new_one_is_refused(
        idle_api: Api) -> None:
    body = _set_stored_before_the_rule(idle_api, "olds")
    url = "/v1/machine-request-sets"
    again = idle_api.request("POST", url, headers=WRITE, json=body)
    assert again.status_code == 200, again.text
    assert again.json()["labels"] == OLD_LABELS
    reapplied = idle_api.request("PUT", f"{url}/olds", headers=WRITE, json=body)
    assert reapplied.status_code == 200, reapplied.text
    for method, path, sent in [("POST", url, {**body, "name": "news"}),
                               ("PUT", f"{url}/news", {**body, "name": "news"}),
                               ("PUT", f"{url}/olds", {**body, "labels": {"team": "red team"}})]:
        answer = idle_api.request(method, path, headers=WRITE, json=sent)
        assert answer.status_code == 422, (method, path, answer.text)
        assert ["body", "labels", "team"] in [p["loc"] for p in answer.json()["detail"]]
    assert idle_api.request("GET", f"{url}/news", headers=WRITE).status_code == 404
