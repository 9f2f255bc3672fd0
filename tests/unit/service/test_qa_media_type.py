"""What a QA pass found in the API's answers to bodies it cannot take: a body sent
with another Content-Type got 422 (while one that is not JSON got 400), and a
malformed talos_version got pydantic's regular expression back. Each failed before
its fix."""

from __future__ import annotations

import json

import pytest

from tests.unit.service.conftest import WRITE, Api, request_body
from tests.unit.service.test_sets import set_body

SETS = "/v1/machine-request-sets"
REQUESTS = "/v1/machine-requests"
#: Every endpoint that reads a JSON body, with a body it would take as JSON.
JSON_ENDPOINTS = [
    ("POST", REQUESTS, request_body("mt-1")),
    ("POST", SETS, set_body("mt", 1)),
    ("PUT", f"{SETS}/mt", set_body("mt", 1)),
    ("PATCH", f"{SETS}/mt", {"machine_count": 2}),
    ("POST", f"{REQUESTS}/mt-1/forget", {"reason": "gone"}),
]


@pytest.mark.parametrize(("method", "url", "body"), JSON_ENDPOINTS)
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/yaml; charset=utf-8"])
def test_a_body_in_another_media_type_is_415(idle_api: Api, method: str, url: str,
                                             body: object, content_type: str | None) -> None:
    headers = dict(WRITE)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = idle_api.request(method, url, headers=headers, content=json.dumps(body))
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str)  # the shape of every non-422 error: {"detail": "..."}
    assert "Content-Type: application/json" in detail
    assert "mt-1" not in response.text
    assert "gone" not in response.text


def test_the_media_type_is_checked_before_anything_else_and_json_still_works(
        idle_api: Api) -> None:
    # +json media types are JSON, as FastAPI reads them.
    created = idle_api.request("POST", REQUESTS, headers={
        **WRITE, "Content-Type": "application/merge-patch+json"},
        content=json.dumps(request_body("mt-2")))
    assert created.status_code == 201, created.text
    # A JSON body with the right type that is not an object stays a 422 at body.
    refused = idle_api.request("POST", REQUESTS, headers=WRITE, json=[1])
    assert refused.status_code == 422, refused.text
    # A call with no body at all is not a media type problem: the body is required.
    empty = idle_api.request("POST", REQUESTS, headers={**WRITE, "Content-Type": "text/plain"})
    assert empty.status_code == 422, empty.text
    assert empty.json()["detail"][0]["loc"] == ["body"]


def test_the_openapi_document_names_the_415(idle_api: Api) -> None:
    paths = idle_api.request("GET", "/openapi.json").json()["paths"]
    for method, url in (("post", REQUESTS), ("post", SETS), ("put", SETS + "/{name}"),
                        ("patch", SETS + "/{name}")):
        assert "415" in paths[url][method]["responses"], (method, url)
    assert "415" not in paths[REQUESTS]["get"]["responses"]


@pytest.mark.parametrize(("version", "hint"), [
    ("1.13.9", " (with the leading v)"), ("v1.13", ""), ("latest", ""), ("v1.13.9 ", "")])
def test_a_malformed_talos_version_gets_a_short_message(idle_api: Api, version: str,
                                                        hint: str) -> None:
    for url, body in ((REQUESTS, request_body("tv-1", talos_version=version)),
                      (SETS, set_body("tv", 1, talos_version=version))):
        response = idle_api.request("POST", url, headers=WRITE, json=body)
        assert response.status_code == 422, response.text
        [problem] = response.json()["detail"]
        assert problem["loc"] == ["body", "talos_version"]
        assert problem["msg"] == f"talos_version must be a Talos version like v1.13.9{hint}"
        assert "^" not in response.text
        assert "pattern" not in problem["msg"]
    schema = idle_api.request("GET", "/openapi.json").json()
    # The schema still carries the pattern, for clients that validate before sending.
    assert "pattern" in json.dumps(schema["components"]["schemas"]["MachineRequestCreate"]
                                   ["properties"]["talos_version"])


@pytest.mark.parametrize(("method", "url", "body", "loc", "longest"), [
    ("POST", REQUESTS, request_body("Bad_Id"), ["body", "id"], 63),
    ("POST", SETS, set_body("Bad_Set", 1), ["body", "name"], 52),
    ("GET", f"{REQUESTS}/Bad_Id", None, ["path", "request_id"], 63),
    ("PATCH", f"{SETS}/Bad_Set", {"machine_count": 1}, ["path", "name"], 52),
])
def test_a_malformed_name_is_told_in_words_not_as_a_regular_expression(
        idle_api: Api, method: str, url: str, body: object, loc: list[str],
        longest: int) -> None:
    # QA: ids and set names answered pydantic's "String should match pattern '^[a-z0-9]…'".
    response = idle_api.request(method, url, headers=WRITE,
                                **({"json": body} if body is not None else {}))
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]
    problem = next(p for p in problems if p["loc"][-1] == loc[-1])
    assert problem["msg"] == ("must be lowercase letters, digits and '-', starting and ending "
                              f"with a letter or digit, at most {longest} characters")
    assert "^" not in response.text


def test_a_quoted_count_or_flag_says_to_remove_the_quotes(idle_api: Api) -> None:
    # QA: "machine_count": "3" answered pydantic's "Input should be a valid integer"
    # while the CLI said "not a string (remove the quotes)" for the same mistake.
    body = {**set_body("qc", 1), "machine_count": "3", "secure_boot": "true"}
    response = idle_api.request("POST", SETS, headers=WRITE, json=body)
    assert response.status_code == 422, response.text
    messages = {p["loc"][-1]: p["msg"] for p in response.json()["detail"]}
    assert messages["machine_count"] == ("must be a JSON integer, not a string "
                                         "(remove the quotes)")
    assert messages["secure_boot"] == "must be a JSON boolean, not a string (remove the quotes)"
