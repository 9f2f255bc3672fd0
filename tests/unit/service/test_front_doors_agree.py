"""A request file, a cluster spec and an API body take the same values and refuse
the same ones, naming the same field in the same words.

QA: a request file read ``secure_boot: "no"`` as false and ``"yes"`` as true, and
took a META ``key: "10"`` and AWS's ``root_volume: {size: "20"}``; a cluster spec
took the quoted key and size too. The API refuses all of them (422), and README
says files are checked the same way.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import yaml

from talprov.errors import QUOTES_HINT, dotted, strict_type_message
from tests.helpers import WORKER_CONFIG, Home
from tests.unit.service.conftest import WRITE, open_api, request_body

AWS = {"type": "aws", "region": "us-east-1", "endpoint_url": "http://127.0.0.1:9",
       "image_bucket": "talos-images"}
DATA = {"instance_type": "t3.small"}

#: (fields of the request or machine class, the field refused, what it must be)
REFUSED: list[tuple[dict[str, Any], tuple[str | int, ...], str]] = [
    ({"secure_boot": "no"}, ("secure_boot",), "boolean"),
    ({"secure_boot": "yes"}, ("secure_boot",), "boolean"),
    ({"secure_boot": "true"}, ("secure_boot",), "boolean"),
    ({"meta_values": [{"key": "10", "value": "x"}]}, ("meta_values", 0, "key"), "integer"),
    ({"provider_data": {**DATA, "root_volume": {"size": "20"}}},
     ("provider_data", "root_volume", "size"), "integer"),
    ({"provider_data": {**DATA, "root_volume": {"encrypted": "true"}}},
     ("provider_data", "root_volume", "encrypted"), "boolean"),
]
#: What a file says; the API says "a JSON integer" / "a JSON boolean".
FILE_WORDS = {"integer": "an integer", "boolean": "true or false"}

DOORS = ["request file", "cluster spec", "API body"]


def _aws_home(home: Home) -> Home:
    home.providers["aws-x"] = AWS
    home.write_config()
    (home.root / "worker.yaml").write_text(WORKER_CONFIG)
    return home


def _through_a_request_file(home: Home, fields: dict[str, Any]) -> tuple[int, str, str]:
    body = {"id": "q-1", "provider": "aws-x", "talos_version": "v1.13.9",
            "config": {"file": "worker.yaml"}, "provider_data": DATA, **fields}
    path = home.root / "q.yaml"
    path.write_text(yaml.safe_dump(body))
    result = home.invoke("machine", "create", "-f", str(path))
    return result.exit_code, result.output, f"{path}: "


def _through_a_cluster_spec(home: Home, fields: dict[str, Any]) -> tuple[int, str, str]:
    docs = [{"kind": "Cluster", "name": "c1", "talos": {"version": "v1.13.9"}},
            {"kind": "MachineClass", "name": "small", "provider": "aws-x",
             "provider_data": DATA, **fields},
            {"kind": "Workers", "name": "w", "machineClass": {"name": "small", "size": 0},
             "config": {"file": "worker.yaml"}}]
    path = home.root / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = home.invoke("plan", "-f", str(path))
    return result.exit_code, result.output, f'{path}: document 2 (MachineClass "small"): '


def _through_the_api(home: Home, fields: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    for api in open_api(home, workers=False):
        body = request_body("q-1", **{"provider": "aws-x", "provider_data": DATA,
                                      "config": WORKER_CONFIG, **fields})
        response = api.request("POST", "/v1/machine-requests", headers=WRITE, json=body)
        if response.status_code == 422:
            return 422, response.json()["detail"]
        return response.status_code, []
    raise AssertionError("the API did not open")


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(("fields", "loc", "noun"), REFUSED)
def test_a_quoted_flag_or_number_is_refused_at_every_door(
        home: Home, door: str, fields: dict[str, Any], loc: tuple[str | int, ...],
        noun: str) -> None:
    _aws_home(home)
    if door == "API body":
        status, detail = _through_the_api(home, fields)
        assert status == 422, detail
        assert [p["msg"] for p in detail if p["loc"] == ["body", *loc]] == [
            f"must be a JSON {noun}{QUOTES_HINT}"], detail
        return
    through = _through_a_request_file if door == "request file" else _through_a_cluster_spec
    code, output, where = through(home, fields)
    assert code == 2, output
    assert f"{where}{dotted(loc)}: must be {FILE_WORDS[noun]}{QUOTES_HINT}" in output, output
    assert "Traceback" not in output


@pytest.mark.parametrize("door", DOORS)
def test_the_same_values_unquoted_pass_every_door(home: Home, door: str) -> None:
    _aws_home(home)
    fields = {"secure_boot": False, "meta_values": [{"key": 10, "value": "x"}],
              "provider_data": {**DATA, "root_volume": {"size": 20, "encrypted": True}}}
    if door == "API body":
        status, detail = _through_the_api(home, fields)
        assert status == 201, detail
        return
    through = _through_a_request_file if door == "request file" else _through_a_cluster_spec
    code, output, _ = through(home, fields)
    assert code == 0, output


@pytest.mark.parametrize(("kind", "value", "json", "said"), [
    ("bool_type", "yes", False, f"must be true or false{QUOTES_HINT}"),
    ("bool_type", "Off", True, f"must be a JSON boolean{QUOTES_HINT}"),
    # Without the quotes it would be no flag or number either: no hint to remove them.
    ("bool_type", "maybe", False, "must be true or false"),
    ("int_type", "twenty", True, "must be a JSON integer"),
    ("int_type", "20", False, f"must be an integer{QUOTES_HINT}"),
    ("float_type", "0.5", True, f"must be a JSON number{QUOTES_HINT}"),
    ("int_type", 20.5, False, "must be an integer"),
    ("string_type", "20", False, None),
])
def test_one_message_for_a_strict_number_or_flag(
        kind: str, value: object, json: bool, said: str | None) -> None:
    assert strict_type_message(kind, value, json=json) == said


def test_a_yaml_date_in_provider_data_is_named_not_a_traceback(home: Home) -> None:
    """provider_data is validated as JSON: YAML's dates and non-string keys, which
    JSON cannot carry, are refused at their field."""
    _aws_home(home)
    for fields, where in (({"provider_data": {**DATA, "subnets": [date(2024, 1, 1)]}},
                           "provider_data.subnets[0]: must be a string, number"),
                          ({"provider_data": {**DATA, "tags": {1: "x"}}},
                           "provider_data.tags: every key must be a string")):
        code, output, path = _through_a_request_file(home, fields)
        assert code == 2, output
        assert f"{path}{where}" in output, output
