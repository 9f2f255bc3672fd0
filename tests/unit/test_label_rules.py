"""One rule for label keys and values, whichever way a request comes in (issue 14:
what the API refuses, `machine create -f` and cluster specs refuse too).

Before: `machine create -f` and cluster specs took a label key like `team[x]` (or
a value with NUL) that the HTTP API refuses with 422.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import Home
from tests.unit.service.conftest import WRITE, Api, open_api, request_body
from tests.unit.test_cli import assert_usage_error

BAD_LABELS: list[tuple[dict[str, str], str]] = [
    ({"team[x]": "a"}, "labels.team[x]"),
    ({"-team": "a"}, "labels.-team"),
    ({"team": "a\x00b"}, "labels.team"),
    ({"team": "é" * 600}, "labels.team"),
    ({f"k{n}": "v" for n in range(65)}, "labels"),
    # The labels talprov sets itself: a request carrying talprov.cluster and
    # talprov.set was counted in that cluster's machine set, and the scaler then
    # deleted one of the set's real machines (a scoped token could do this to a
    # cluster on an instance outside its scope).
    ({"talprov.cluster": "victim", "talprov.set": "workers"}, "labels"),
    # The prefix in another case looks like talprov's own label to a person.
    ({"TALPROV.cluster": "victim"}, "labels"),
]


@pytest.mark.parametrize(("labels", "field"), BAD_LABELS)
def test_a_request_file_refuses_what_the_api_refuses(
    home: Home, labels: dict[str, str], field: str
) -> None:
    request = home.write_request("lab-1", labels=labels)
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output, f"{request}: {field}")
    assert "lab-1" not in home.invoke("machine", "list", "-o", "json").output


@pytest.mark.parametrize(("labels", "field"), [*BAD_LABELS[:2], BAD_LABELS[-1]])
def test_a_cluster_spec_refuses_what_the_api_refuses(
    home: Home, labels: dict[str, str], field: str
) -> None:
    spec = home.write_spec(labels=labels)
    result = home.invoke("plan", "-f", str(spec))
    assert_usage_error(result.exit_code, result.output, f'(Workers "w"): {field}')


@pytest.fixture
def api(home: Home) -> Iterator[Api]:
    yield from open_api(home)


@pytest.mark.parametrize(("labels", "field"), BAD_LABELS)
def test_the_api_refuses_the_same_labels(api: Api, labels: dict[str, str], field: str
                                         ) -> None:
    body = request_body("lab-api", labels=labels)
    response = api.request("POST", "/v1/machine-requests", json=body, headers=WRITE)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:2] == ["body", "labels"]


def test_good_labels_pass_everywhere(home: Home) -> None:
    request = home.write_request("lab-ok", labels={"team.example.com/owner": "blue",
                                                   "role": "worker"})
    result = home.invoke("machine", "create", "-f", str(request))
    assert result.exit_code == 0, result.output


def test_the_reserved_prefix_is_named_in_the_refusal(api: Api) -> None:
    body = request_body("inj", labels={"talprov.cluster": "victim"})
    response = api.request("POST", "/v1/machine-requests", json=body, headers=WRITE)
    assert response.status_code == 422, response.text
    assert "talprov. prefix is reserved" in response.json()["detail"][0]["msg"]


def test_every_reserved_label_is_named_whatever_its_case(home: Home) -> None:
    """QA: only the first offending label was named, and TALPROV.x was accepted.
    A label key's prefix is a DNS subdomain (Kubernetes' rule), whose meaning
    ignores case: `Talprov.` is the reserved prefix too."""
    # Kubernetes refuses an upper-case prefix ("Example.com/abc" is one of its own
    # error cases): a reserved key with a prefix is written in lower case here.
    keys = ["talprov.cluster", "TALPROV.set", "talprov.example.com/owner"]
    request = home.write_request("lab-r", labels={"team": "blue", **{k: "x" for k in keys}})
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output, f"{request}: labels", *keys)
    assert "team" not in result.output.split("labels", 1)[1]
    # A key that only contains the word is not reserved.
    allowed = home.write_request("lab-ok", labels={"my.talprov.example/x": "y"})
    assert home.invoke("machine", "create", "-f", str(allowed)).exit_code == 0
