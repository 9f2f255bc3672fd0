"""Config problems surface on load, for every command, naming file and key; secret
references are resolved only for the instances a command uses (issue 14, item 3).

Before: a typo, an unknown type, a missing region, a URL without scheme and a bad
instance name all passed `providers` and `machine list`; an unset variable of an
unused instance blocked `machine list`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from talprov.testing.factory import FakeImageFactory
from tests.helpers import Home
from tests.unit.test_cli import assert_usage_error

PVE = {"type": "proxmox", "url": "https://pve.example.test:8006", "token_id": "root@pam!t",
       "token_secret": "s" * 20}


@pytest.mark.parametrize(("name", "block", "key"), [
    ("aws1", {"type": "aws", "regoin": "eu-west-1"}, "providers.aws1.regoin"),
    ("aws1", {"type": "aws", "region": "eu-west-1", "regoin": "x"}, "providers.aws1.regoin"),
    ("az", {"type": "azure"}, "providers.az.type"),
    ("aws1", {"type": "aws"}, "providers.aws1.region"),
    ("pve", {**PVE, "url": "pve.example.test:8006"}, "providers.pve.url"),
    ("Bad_Name", PVE, "providers.Bad_Name"),
])
@pytest.mark.parametrize("command", [("providers",), ("machine", "list")])
def test_every_command_checks_the_whole_file(
    home: Home, name: str, block: dict[str, Any], key: str, command: tuple[str, ...]
) -> None:
    home.providers[name] = block
    home.write_config()
    result = home.invoke(*command)
    assert_usage_error(result.exit_code, result.output, str(home.config_path), key)


def test_the_image_factory_url_needs_a_scheme(home: Home) -> None:
    home.write_config(image_factory={"url": "factory.internal"})
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, "image_factory.url")


def assert_refused_only_where_used(home: Home, instance: str, *needles: str
                                   ) -> dict[str, dict[str, Any]]:
    """``instance``'s block is judged only once resolved: ``machine list`` passes, a
    create of a request for it exits 2 naming ``needles``, and ``config check``
    exits 1 with the instance's row naming them. Returns config check's rows."""
    assert home.invoke("machine", "list").exit_code == 0
    used = home.write_request(f"{instance}-used", provider=instance)
    result = home.invoke("machine", "create", "-f", str(used))
    assert_usage_error(result.exit_code, result.output, *needles)
    checked = home.invoke("config", "check", "-o", "json")
    assert checked.exit_code == 1, checked.output
    rows = {row["part"]: row for row in json.loads(checked.stdout)}
    for needle in needles:
        assert needle in rows[f"providers.{instance}"]["result"]
    return rows


def test_secrets_of_unused_instances_do_not_block(home: Home, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    monkeypatch.delenv("PVE_TOKEN_UNSET", raising=False)
    home.providers["pve"] = {**PVE, "token_secret": "${env:PVE_TOKEN_UNSET}"}
    home.write_config()
    request = home.write_request("r-1")  # for the fake instance
    assert home.invoke("machine", "create", "-f", str(request)).exit_code == 0
    rows = assert_refused_only_where_used(home, "pve", "providers.pve.token_secret",
                                          "PVE_TOKEN_UNSET")
    assert rows["providers.fake"]["result"] == "ok"
    assert "PVE_TOKEN_UNSET is not set" in rows["providers.pve"]["result"]


def test_an_unset_factory_password_blocks_only_what_uses_the_factory(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """QA: `image_factory.password: ${env:IFPW}` unset stopped every command (exit 2),
    `machine list` and `providers` too; the README says references are resolved
    only for what a command uses."""
    monkeypatch.delenv("IFPW_UNSET", raising=False)
    home.write_config(image_factory={"url": "https://factory.example.test",
                                     "username": "u", "password": "${env:IFPW_UNSET}"})
    assert home.invoke("machine", "list").exit_code == 0
    assert home.invoke("providers").exit_code == 0
    # The fake instance fetches no image: its requests need no factory password
    # (what does is tests/unit/talos/test_factory_password_lazy.py).
    request = home.write_request("r-1")
    assert home.invoke("machine", "create", "-f", str(request)).exit_code == 0
    checked = home.invoke("config", "check", "-o", "json")
    assert checked.exit_code == 1, checked.output
    rows = {row["part"]: row for row in json.loads(checked.stdout)}
    assert "IFPW_UNSET is not set" in rows["image_factory"]["result"]
    monkeypatch.setenv("IFPW_UNSET", "s3cret-value")
    checked = home.invoke("config", "check", "-o", "json")
    assert checked.exit_code == 0, checked.output
    assert "s3cret-value" not in checked.output


def test_config_check_connect_asks_each_endpoint(
        home: Home, image_factory: FakeImageFactory) -> None:
    # --connect asks the Image Factory too (factory.talos.dev when none is
    # configured): the stand-in's, as no test may reach another address.
    home.write_config(image_factory={"url": image_factory.url})
    assert home.invoke("config", "check").exit_code == 0
    connected = home.invoke("config", "check", "--connect", "-o", "yaml")
    assert connected.exit_code == 0, connected.output
    assert "ok" in connected.stdout


def test_an_unusable_instance_does_not_stop_work_on_the_others(
    home: Home, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Commands that work on every instance (reconcile, --wait, clusters, --health)
    leave an instance they cannot build out, with one warning, instead of failing
    as a whole (before: exit 2 naming the other instance's unset variable)."""
    monkeypatch.delenv("PVE_TOKEN_UNSET", raising=False)
    home.providers["pve"] = {**PVE, "token_secret": "${env:PVE_TOKEN_UNSET}"}
    home.write_config()
    request = home.write_request("r-1")  # for the fake instance
    created = home.invoke("machine", "create", "-f", str(request), "--wait",
                          "--timeout", "60")
    assert created.exit_code == 0, created.output
    # Only the request's instance is create's business (QA: it warned about pve).
    assert "left out" not in created.output
    reconciled = home.invoke("reconcile", "--once")
    assert reconciled.exit_code == 0, reconciled.output
    # reconcile works on every instance: pve's problem is its warning.
    assert "provider instance pve left out" in reconciled.output
    assert "PVE_TOKEN_UNSET" in reconciled.output
    health = home.invoke("providers", "--health", "-o", "json")
    assert health.exit_code == 1
    rows = {row["name"]: row["detail"] for row in json.loads(health.stdout)
            if row["kind"] == "instance"}
    assert rows["fake"] == "ok"
    assert rows["pve"].startswith("unusable:")
    assert "PVE_TOKEN_UNSET" in rows["pve"]


def test_config_check_names_a_misspelt_key_of_the_service_block(home: Home) -> None:
    home.write_config(service={"lisen": "127.0.0.1:8080", "tokens": []})
    checked = home.invoke("config", "check", "-o", "json")
    # Invalid config: 2, as `talprov serve` exits for this block.
    assert checked.exit_code == 2, checked.output
    rows = {row["part"]: row for row in json.loads(checked.stdout)}
    assert "service.lisen: unknown field" in rows["service"]["result"]


def test_every_command_checks_the_service_blocks_shape(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """QA: `service.listn` passed `machine list` (exit 0) while config check and serve
    refused it; a reference in the block is still resolved only by what uses it."""
    monkeypatch.delenv("SVC_TOKEN_UNSET", raising=False)
    home.write_config(service={"listn": "127.0.0.1:8080"})
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, "service.listn")
    home.write_config(service={"tokens": [{"name": "admin", "value": "${env:SVC_TOKEN_UNSET}"}]})
    assert home.invoke("machine", "list").exit_code == 0


def test_a_token_given_as_a_reference_is_judged_by_its_value(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    # QA: serve refused `value: "${env:QA_TOKEN}"` (a 24-character token) as shorter
    # than 16 characters -- it measured the 15-character reference -- while config
    # check, which judges the resolved block, said ok.
    monkeypatch.setenv("QA_TOKEN", "t" * 8 + "0123456789abcdef")
    home.write_config(service={"listen": "127.0.0.1:0",
                               "tokens": [{"name": "ops", "value": "${env:QA_TOKEN}"}]})
    assert home.invoke("providers").exit_code == 0
    assert home.invoke("config", "check").exit_code == 0
    monkeypatch.setenv("QA_TOKEN", "short")
    refused = home.invoke("config", "check")
    assert refused.exit_code == 2, refused.output
    assert "at least 16 characters" in refused.output


def test_cluster_commands_warn_only_about_instances_the_cluster_uses(
    home: Home, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """QA: `plan` of a spec on instance fake warned `provider instance pve left out:
    ... PVE_TOKEN_UNSET is not set` (the README: references are resolved only for
    the instances a command uses)."""
    from tests.unit.test_cluster_apply import write_spec

    monkeypatch.delenv("PVE_TOKEN_UNSET", raising=False)
    home.providers["pve"] = {**PVE, "token_secret": "${env:PVE_TOKEN_UNSET}"}
    home.write_config()
    spec = write_spec(home.root, workers=1, control_planes=1)
    for command in (("plan", "-f", str(spec)), ("apply", "-f", str(spec)),
                    ("status", "demo"), ("scale", "demo", "workers", "2"),
                    ("apply", "-f", str(spec), "--wait", "--timeout", "120")):
        result = home.invoke(*command)
        assert result.exit_code == 0, (command, result.output)
        assert "left out" not in result.output, command
