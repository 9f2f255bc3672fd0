"""What a QA pass found in the API's handling of bodies: each case failed before
its fix (versions talprov has no rules for, string numbers, PUT without a name,
malformed JSON answered 422, a reserved label key said twice)."""

from __future__ import annotations

from typing import Any

import pytest

from talprov.providers.types import SUPPORTED_TALOS_LINES
from tests.helpers import Home
from tests.unit.service.conftest import WRITE, Api, open_api, request_body
from tests.unit.service.test_sets import set_body

SETS = "/v1/machine-request-sets"
REQUESTS = "/v1/machine-requests"


def problems(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    found: list[dict[str, Any]] = response.json()["detail"]
    return found


@pytest.mark.parametrize(("version", "relation"), [
    ("v1.99.0", "newer"), ("v1.14.0", "newer"), ("v2.0.0", "newer"),
    ("v1.14.0-alpha.1", "newer"), ("v1.8.3", "older"), ("v0.14.0", "older")])
def test_a_talos_version_of_a_line_talprov_has_no_rules_for_is_422(
        idle_api: Api, version: str, relation: str) -> None:
    """QA: v1.99.0 was accepted (201) and failed later, in the worker. The 422
    names the field and the supported lines, never the value sent (QA: it said
    "'v1.99.0' is newer than…", against docs/service.md)."""
    for url, body in ((REQUESTS, request_body("v-1", talos_version=version)),
                      (SETS, set_body("v", 1, talos_version=version))):
        response = idle_api.request("POST", url, headers=WRITE, json=body)
        [problem] = problems(response)
        assert problem["loc"] == ["body", "talos_version"]
        assert problem["msg"].startswith(
            f"talos_version is {relation} than the Talos versions talprov supports ("), problem
        lines = ", ".join(f"v{major}.{minor}" for major, minor in SUPPORTED_TALOS_LINES)
        assert f"({lines})" in problem["msg"]
        assert version not in response.text
    assert idle_api.request("GET", f"{REQUESTS}/v-1", headers=WRITE).status_code == 404


def test_every_supported_line_is_accepted(idle_api: Api) -> None:
    for index, (major, minor) in enumerate(SUPPORTED_TALOS_LINES):
        body = request_body(f"line-{index}", talos_version=f"v{major}.{minor}.0")
        created = idle_api.request("POST", REQUESTS, headers=WRITE, json=body)
        assert created.status_code == 201, created.text


@pytest.mark.parametrize("count", ["3", 3.0, True, "1e1"])
def test_machine_count_must_be_a_json_integer(idle_api: Api, count: object) -> None:
    """QA: machine_count "3" made a set of 3 machines."""
    sent = {**set_body("strict", 1), "machine_count": count}
    [problem] = problems(idle_api.request("POST", SETS, headers=WRITE, json=sent))
    assert problem["loc"] == ["body", "machine_count"]
    assert idle_api.request("GET", f"{SETS}/strict", headers=WRITE).status_code == 404
    created = idle_api.request("POST", SETS, headers=WRITE, json=set_body("strict", 1))
    assert created.status_code == 201, created.text
    for method, body in (("PATCH", {"machine_count": count}),
                         ("PUT", sent)):
        [problem] = problems(idle_api.request(method, f"{SETS}/strict", headers=WRITE,
                                              json=body))
        assert problem["loc"] == ["body", "machine_count"]
    got = idle_api.request("GET", f"{SETS}/strict", headers=WRITE).json()
    assert got["machine_count"] == 1


@pytest.mark.parametrize(("fields", "loc"), [
    ({"meta_values": [{"key": "10", "value": "x"}]}, ["body", "meta_values", 0, "key"]),
    ({"secure_boot": "yes"}, ["body", "secure_boot"]),
    ({"secure_boot": 1}, ["body", "secure_boot"]),
])
def test_other_numbers_and_booleans_are_strict_too(idle_api: Api, fields: dict[str, Any],
                                                   loc: list[object]) -> None:
    response = idle_api.request("POST", REQUESTS, headers=WRITE,
                                json=request_body("strict-1", **fields))
    assert [p["loc"] for p in problems(response)] == [loc]


def test_json_numbers_and_booleans_still_pass(idle_api: Api) -> None:
    body = request_body("loose-1", meta_values=[{"key": 10, "value": "x"}], secure_boot=False,
                        provider_data={"size": "medium"})
    created = idle_api.request("POST", REQUESTS, headers=WRITE, json=body)
    assert created.status_code == 201, created.text


def test_provider_data_is_validated_as_json_strictly(home: Home) -> None:
    """The provider's own model, strictly: AWS's root_volume.size "20" or
    encrypted "true" is a 422 at that field; enums and literals still come as
    strings. (Validation makes no AWS call: the endpoint is never reached.)"""
    home.providers["aws-x"] = {"type": "aws", "region": "us-east-1",
                               "endpoint_url": "http://127.0.0.1:9"}
    home.write_config()
    for api in open_api(home, workers=False):
        def sent(api: Api, **volume: object) -> Any:
            data = {"instance_type": "t3.small", "root_volume": {"type": "gp3", **volume}}
            return api.request("POST", REQUESTS, headers=WRITE,
                               json=request_body("aws-1", provider="aws-x", provider_data=data))

        quoted = "not a string (remove the quotes)"
        for field, value, words in (("size", "20", f"must be a JSON integer, {quoted}"),
                                    ("size", 20.5, None),
                                    ("encrypted", "true", f"must be a JSON boolean, {quoted}")):
            [problem] = problems(sent(api, **{field: value}))
            assert problem["loc"] == ["body", "provider_data", "root_volume", field]
            # QA: a quoted number here got pydantic's wording, the body's own fields ours.
            assert words is None or problem["msg"] == words, problem
        created = sent(api, size=20, encrypted=True)
        assert created.status_code == 201, created.text


def test_put_of_a_set_needs_no_name_in_the_body(idle_api: Api) -> None:
    """QA: PUT answered 422 "Field required" for a body without `name`, which the
    path already gives. The path wins; a different name is still a 422."""
    body = set_body("unused", 1)
    del body["name"]
    created = idle_api.request("PUT", f"{SETS}/pathname", headers=WRITE, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "pathname"
    replaced = idle_api.request("PUT", f"{SETS}/pathname", headers=WRITE,
                                json={**body, "machine_count": 2})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["machine_count"] == 2
    same = idle_api.request("PUT", f"{SETS}/pathname", headers=WRITE,
                            json=set_body("pathname", 2))
    assert same.status_code == 200, same.text
    [problem] = problems(idle_api.request("PUT", f"{SETS}/pathname", headers=WRITE,
                                          json=set_body("othername", 2)))
    assert problem["loc"] == ["body", "name"]
    # POST, which has no path to take it from, still needs it.
    [problem] = problems(idle_api.request("POST", SETS, headers=WRITE, json=body))
    assert problem["loc"] == ["body", "name"]


@pytest.mark.parametrize("url", [REQUESTS, SETS, f"{SETS}/any", f"{REQUESTS}/x/forget"])
def test_a_body_that_is_not_json_is_400(idle_api: Api, url: str) -> None:
    """QA: malformed JSON answered 422 while docs/service.md's table gives 400 for a
    body that is not JSON. 400: the server cannot read it (RFC 9110); 422: it read
    the content and refuses it."""
    method = {SETS: "POST", REQUESTS: "POST", f"{SETS}/any": "PUT"}.get(url, "POST")
    headers = {**WRITE, "Content-Type": "application/json"}
    for body, why in ((b'{"id": "secret-value', "Unterminated string"),
                      (b'{"id": 1,}', "character 9"),
                      (b'{"id": "\xff"}', "There was an error parsing the body")):
        response = idle_api.request(method, url, headers=headers, content=body)
        assert response.status_code == 400, response.text
        assert why in response.json()["detail"], response.text
        assert "secret-value" not in response.text
    valid_json_bad_body = idle_api.request(method, url, headers=headers, content=b"[]")
    assert valid_json_bad_body.status_code == 422, valid_json_bad_body.text


def test_the_openapi_document_names_the_400(idle_api: Api) -> None:
    paths = idle_api.request("GET", "/openapi.json").json()["paths"]
    assert "400" in paths[REQUESTS]["post"]["responses"]
    assert "400" in paths[SETS + "/{name}"]["put"]["responses"]
    assert "400" not in paths[REQUESTS]["get"]["responses"]


def test_a_reserved_label_is_named_once_at_its_own_loc(idle_api: Api) -> None:
    """QA: the 422 named the key in its message ("label 'talprov.cluster': the
    talprov. prefix ..."); now `loc` names it, once per key, and `msg` says why."""
    labels = {"team": "blue", "talprov.cluster": "x", "TALPROV.set": "y"}
    found = problems(idle_api.request("POST", REQUESTS, headers=WRITE,
                                      json=request_body("lab-1", labels=labels)))
    assert [p["loc"] for p in found] == [["body", "labels", "talprov.cluster", "[key]"],
                                         ["body", "labels", "TALPROV.set", "[key]"]]
    for problem in found:
        assert problem["msg"].startswith("the talprov. prefix is reserved"), problem
        assert "talprov.cluster" not in problem["msg"]
        assert "TALPROV" not in problem["msg"]
