"""A misspelt key is reported as that key, with the valid key it resembles, in one
message (issue 14: config checked up front, one message for one mistake).

Before: `regoin:` under an aws instance was reported as the missing `region`, and
the unknown key itself was not named; a misspelt `type` read as a missing type.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from talprov.errors import describe_problem, unknown_key_message
from tests.helpers import Home
from tests.unit.test_cli import assert_usage_error


@pytest.mark.parametrize(("name", "block", "key", "hint"), [
    ("aws1", {"type": "aws", "regoin": "eu-west-1"}, "providers.aws1.regoin", "'region'"),
    ("pve", {"type": "proxmox", "url": "https://pve.example.test:8006",
             "token_id": "root@pam!t", "token_secert": "s" * 20},
     "providers.pve.token_secert", "'token_secret'"),
    ("aws1", {"tpye": "aws", "region": "eu-west-1"}, "providers.aws1.tpye", "'type'"),
    ("os1", {"type": "openstack", "auth": {"auth_ur": "https://k.example.test/v3",
                                           "username": "u", "password": "p" * 12,
                                           "project_name": "p"}},
     "providers.os1.auth.auth_ur", "'auth_url'"),
])
def test_a_misspelt_instance_key_is_named_with_a_suggestion(
    home: Home, name: str, block: dict[str, Any], key: str, hint: str
) -> None:
    home.providers[name] = block
    home.write_config()
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, str(home.config_path), key,
                       f"did you mean {hint}?")
    assert "required" not in result.output


def test_a_misspelt_top_level_key_is_named_with_a_suggestion(home: Home) -> None:
    home.write_config(image_factroy={"url": "https://factory.talos.dev"})
    result = home.invoke("providers")
    assert_usage_error(result.exit_code, result.output, "image_factroy",
                       "did you mean 'image_factory'?")


def test_a_misspelt_request_file_key_is_named_with_a_suggestion(home: Home) -> None:
    request = home.write_request("r-1", provder="fake")
    body = yaml.safe_load(request.read_text())
    del body["provider"]
    request.write_text(yaml.safe_dump(body))
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output, f"{request}: provder",
                       "did you mean 'provider'?")
    nested = home.write_request("r-2", config={"fiel": "worker.yaml"})
    result = home.invoke("machine", "create", "-f", str(nested))
    assert_usage_error(result.exit_code, result.output, f"{nested}: config.fiel",
                       "did you mean 'file'?")
    data = home.write_request("r-3", provider_data={"sise": "small"})
    result = home.invoke("machine", "create", "-f", str(data))
    assert_usage_error(result.exit_code, result.output, "provider_data.sise",
                       "did you mean 'size'?")


def test_a_misspelt_cluster_spec_key_is_named_with_a_suggestion(home: Home) -> None:
    spec = home.write_spec(machineClass=None, machineClas={"name": "small", "size": 1})
    result = home.invoke("plan", "-f", str(spec))
    assert_usage_error(result.exit_code, result.output, 'document 3 (Workers "w"): machineClas',
                       "did you mean 'machineClass'?")
    spec = home.write_spec(update={"maxSurg": 1})
    result = home.invoke("plan", "-f", str(spec))
    assert_usage_error(result.exit_code, result.output, "update.maxSurg",
                       "did you mean 'maxSurge'?")


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    listen: str
    tokens: list[str] = []


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(alias="clusterName")
    items: list[_Inner] = []
    by_name: dict[str, _Inner] = {}
    either: _Inner | int | None = None


@pytest.mark.parametrize(("body", "path", "message"), [
    ({"clusterNme": "x"}, "clusterNme", "unknown field; did you mean 'clusterName'?"),
    ({"clusterName": "x", "items": [{"listen": "a"}, {"lisen": "b"}]}, "items[1].lisen",
     "unknown field; did you mean 'listen'?"),
    ({"clusterName": "x", "by_name": {"a": {"listen": "a", "tokns": []}}}, "by_name.a.tokns",
     "unknown field; did you mean 'tokens'?"),
    ({"clusterName": "x", "either": {"listen": "a", "tokes": []}}, "either._Inner.tokes",
     "unknown field; did you mean 'tokens'?"),
    ({"clusterName": "x", "zzz": 1}, "zzz",
     "unknown field (valid: by_name, clusterName, either, items)"),
])
def test_suggestions_follow_the_model_down_lists_dicts_and_unions(
    body: dict[str, Any], path: str, message: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        _Outer.model_validate(body)
    assert describe_problem(caught.value.errors(), model=_Outer) == (path, message)


def test_many_valid_keys_are_not_listed() -> None:
    assert unknown_key_message("zzz", [f"key{n}" for n in range(20)]) == "unknown field"


@pytest.mark.parametrize("url", ["${envv:PVE_URL}", "https://${env:PVE_HOST:8006"])
def test_a_malformed_reference_in_a_url_is_reported_as_a_reference(home: Home, url: str
                                                                    ) -> None:
    """Before: reported as "expected an http(s) URL with a host" (the text was taken
    for the URL)."""
    home.providers["pve"] = {"type": "proxmox", "url": url, "token_id": "root@pam!t",
                             "token_secret": "s" * 20}
    home.write_config()
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, "providers.pve.url",
                       "starts no secret reference")
    assert "http(s) URL" not in result.output


def test_misspelt_names_get_the_closest_known_one(home: Home) -> None:
    """Before: the lists of known names, without a suggestion."""
    request = home.write_request("r-4", provider="fkae")
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output, f"{request}: provider",
                       "unknown provider 'fkae'", "did you mean 'fake'?")
    spec = home.write_spec(machineClass={"name": "smal", "size": 1})
    result = home.invoke("plan", "-f", str(spec))
    assert_usage_error(result.exit_code, result.output, "machineClass.name",
                       "did you mean 'small'?")
    home.providers["pve"] = {"type": "proxmx"}
    home.write_config()
    result = home.invoke("providers")
    assert_usage_error(result.exit_code, result.output, "providers.pve.type",
                       "did you mean 'proxmox'?")


def test_a_misspelt_document_kind_gets_the_closest_kind(home: Home) -> None:
    spec = home.root / "cluster.yaml"
    spec.write_text("kind: Cluster\nname: c1\ntalos: {version: v1.13.9}\n---\n"
                    "kind: Worker\nname: w\n")
    result = home.invoke("plan", "-f", str(spec))
    assert_usage_error(result.exit_code, result.output, 'document 2 (Worker "w"): kind',
                       "did you mean 'Workers'?")


def test_a_misspelt_key_holding_a_reference_is_still_named(home: Home) -> None:
    """Before: the whole block passed the load-time check (errors about inputs with a
    reference were put off until the instance is used, the misspelt key's too)."""
    home.providers["pve"] = {"type": "proxmox", "url": "https://pve.example.test:8006",
                             "token_id": "root@pam!t", "token_secert": "${env:PVE_T}"}
    home.write_config()
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, "providers.pve.token_secert",
                       "did you mean 'token_secret'?")


def test_no_config_file_at_all_says_where_it_was_looked_for(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: "unknown provider 'fake' (configured in no config file found: none
    configured)"."""
    from click.testing import CliRunner

    from talprov.cli import cli

    request = home.write_request("r-5")
    env = {"TALPROV_CONFIG": "", "XDG_CONFIG_HOME": str(home.root / "nowhere"),
           "XDG_STATE_HOME": str(home.root / "state")}
    elsewhere = home.root / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./talprov.yaml here
    result = CliRunner().invoke(cli, ["machine", "create", "-f", str(request)], env=env)
    assert_usage_error(result.exit_code, result.output, f"{request}: provider",
                       "no config file found", "TALPROV_CONFIG", "./talprov.yaml")
