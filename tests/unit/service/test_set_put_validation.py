"""PUT of a set: a body that names another set is a 422 naming ``name``."""

from __future__ import annotations

from tests.unit.service.conftest import WRITE, Api
from tests.unit.service.test_sets import set_body


def test_put_with_a_different_name_in_the_body_is_422(idle_api: Api) -> None:
    response = idle_api.request("PUT", "/v1/machine-request-sets/left", headers=WRITE,
                                json=set_body("right", 1))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "name"]
    for name in ("left", "right"):
        assert idle_api.request("GET", f"/v1/machine-request-sets/{name}",
                                headers=WRITE).status_code == 404
    same = idle_api.request("PUT", "/v1/machine-request-sets/left", headers=WRITE,
                            json=set_body("left", 1))
    assert same.status_code == 201, same.text  # it did not exist: created


def test_put_answers_201_when_it_creates_and_200_when_it_replaces(idle_api: Api) -> None:
    created = idle_api.request("PUT", "/v1/machine-request-sets/made", headers=WRITE,
                               json=set_body("made", 1))
    assert created.status_code == 201, created.text
    assert created.json()["machine_count"] == 1
    replaced = idle_api.request("PUT", "/v1/machine-request-sets/made", headers=WRITE,
                                json=set_body("made", 2))
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["machine_count"] == 2
