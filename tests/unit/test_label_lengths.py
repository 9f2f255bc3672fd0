"""Label keys and values follow Kubernetes' rules wherever talprov takes labels
(request files, the API, cluster specs' set labels and nodeLabels, bare-metal
selectors and inventory labels). QA: none had a length limit for keys' parts, and
values took up to 1024 UTF-8 bytes of anything but NUL.

The vectors are Kubernetes' own (apimachinery pkg/api/validate/content
kube_test.go: TestIsLabelKey, TestIsLabelValue).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from talprov.baremetal.data import BareMetalMachineData
from talprov.errors import ConfigError, validate
from talprov.providers.labels import label_key_problem, label_value_problem
from tests.helpers import Home
from tests.unit.baremetal.test_cli_operator import block, run  # noqa: F401
from tests.unit.service.conftest import WRITE, Api, open_api, request_body
from tests.unit.test_cli import assert_usage_error

GOOD_KEYS = [
    "simple", "now-with-dashes", "1-starts-with-num", "1234", "simple/simple",
    "now-with-dashes/simple", "now-with-dashes/now-with-dashes", "now.with.dots/simple",
    "now-with.dashes-and.dots/simple", "1-num.2-num/3-num", "1234/5678", "1.2.3.4/5678",
    "Uppercase_Is_OK_123", "example.com/Uppercase_Is_OK_123", "requests.storage-foo",
    "a" * 63, "a" * 253 + "/" + "b" * 63,
]
BAD_KEYS = [
    "nospecialchars%^=@", "cantendwithadash-", "-cantstartwithadash-", "only/one/slash",
    "Example.com/abc", "example_com/abc", "example.com/", "/simple", "a" * 64,
    "a" * 254 + "/abc",
]
GOOD_VALUES = ["simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234",
               "a" * 63, ""]
BAD_VALUES = ["nospecialchars%^=@", "Tama-nui-te-rā.is.Māori.sun", "\\backslashes\\are\\bad",
              "-starts-with-dash", "ends-with-dash-", ".starts.with.dot", "ends.with.dot.",
              "a" * 64]


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_kubernetes_label_keys_are_taken(key: str) -> None:
    assert label_key_problem(key) is None


@pytest.mark.parametrize("key", BAD_KEYS)
def test_what_kubernetes_refuses_as_a_label_key_is_refused_in_words(key: str) -> None:
    problem = label_key_problem(key)
    assert problem is not None
    assert "[A-Za-z" not in problem  # words, not the regular expression


@pytest.mark.parametrize("value", GOOD_VALUES)
def test_kubernetes_label_values_are_taken(value: str) -> None:
    assert label_value_problem(value) is None


@pytest.mark.parametrize("value", BAD_VALUES)
def test_what_kubernetes_refuses_as_a_label_value_is_refused(value: str) -> None:
    assert label_value_problem(value) is not None


def test_a_request_file_names_the_label_and_the_rule(home: Home) -> None:
    request = home.write_request("lab-1", labels={"team": "a" * 64})
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output, f"{request}: labels.team",
                       "at most 63 characters")
    long_name = "n" * 64
    request = home.write_request("lab-2", labels={f"example.com/{long_name}": "x"})
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output,
                       f"{request}: labels.example.com/{long_name}", "at most 63 characters")


def test_a_cluster_spec_names_the_set_label_and_the_node_label(home: Home) -> None:
    spec = home.write_spec(labels={"team": "blue green"})
    result = home.invoke("plan", "-f", str(spec))
    assert_usage_error(result.exit_code, result.output, '(Workers "w"): labels.team')
    spec = home.write_spec(autoscaling={"min": 1, "max": 2,
                                        "nodeLabels": {"Example.com/pool": "a"}})
    result = home.invoke("plan", "-f", str(spec))
    assert_usage_error(result.exit_code, result.output,
                       '(Workers "w"): autoscaling.nodeLabels.Example.com/pool', "prefix")


@pytest.fixture
def api(home: Home) -> Iterator[Api]:
    yield from open_api(home)


def test_the_api_answers_422_at_the_label(api: Api) -> None:
    body = request_body("lab-api", labels={"team": "a" * 64})
    response = api.request("POST", "/v1/machine-requests", json=body, headers=WRITE)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"][:3] == ["body", "labels", "team"]
    assert "at most 63 characters" in detail["msg"]


def test_a_bare_metal_selector_follows_the_rule() -> None:
    with pytest.raises(ConfigError) as refused:
        validate(BareMetalMachineData, {"selector": {"rack": "r" * 64}}, "r1.yaml: provider_data")
    assert refused.value.where == "r1.yaml: provider_data.selector.rack"
    assert validate(BareMetalMachineData, {"selector": {"rack": "r1"}}, "r").selector == {
        "rack": "r1"}


def test_inventory_labels_follow_the_rule(block: Path, tmp_path: Path) -> None:  # noqa: F811
    machine = ("add", "m1", "--mac", "52:54:00:00:00:01", "--bmc", "ipmi://10.1.0.11:623",
               "--bmc-user", "admin", "--bmc-password", "${env:BMC_PW}")
    result = run(block, *machine, "--label", "rack=r 1")
    assert result.exit_code == 2, result.output
    assert "--label rack: value must be letters" in result.output
    result = run(block, *machine, "--label", "rack")
    assert result.exit_code == 2, result.output  # was dropped without a word
    assert "--label rack: expected KEY=VALUE" in result.output
    taken = run(block, *machine, "--label", "rack=r1")
    assert taken.exit_code == 0, taken.output


def test_inventory_label_keys_and_counts_follow_the_labels_rule(
        block: Path) -> None:  # noqa: F811
    machine = ("add", "m1", "--mac", "52:54:00:00:00:01", "--bmc", "ipmi://10.1.0.11:623",
               "--bmc-user", "admin", "--bmc-password", "${env:BMC_PW}")
    result = run(block, *machine, "--label", "Rack A=r1")
    assert result.exit_code == 2, result.output
    assert "--label Rack A: key must be letters" in result.output
    too_many = [arg for n in range(65) for arg in ("--label", f"k{n}=v")]
    result = run(block, *machine, *too_many)
    assert result.exit_code == 2, result.output
    assert "--label: " in result.output
    assert "64" in result.output
