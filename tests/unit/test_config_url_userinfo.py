"""No provider url carries a ``user@`` or ``user:password@``, whether written
in talprov.yaml or given as a reference (``${env:NAME}``), and the message says
where that type's credentials go instead.

QA: ``http://alice@host`` was accepted. Written into the file, every provider
url with any userinfo was already refused at load; given by a reference, AWS's
endpoint_url and bare metal's boot_url took it (and any other url rule, a query
too) without a word: only Proxmox and vSphere check their url after the value
is resolved. No driver takes credentials from its url (bare metal's boot_url is
talprov's own boot server, which asks for none); only ``image_factory.url``
does (``user:password@``), and that rule is its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.helpers import Home
from tests.unit.test_cli import assert_usage_error

SECRET = "pw-QA-userinfo-41d"
PVE = {"type": "proxmox", "token_id": "root@pam!t",
       "token_secret": "00000000-0000-0000-0000-000000000000"}
VC = {"type": "vmware", "username": "talprov@vsphere.local", "password": "secret-pass"}
OS_AUTH = {"application_credential_id": "ac", "application_credential_secret": "acs"}

#: Per type: its block around a url, the url's field, where its credentials go
#: (the start of what its message says).
TYPES: dict[str, tuple[Any, str, str]] = {
    "proxmox": (lambda url: {**PVE, "url": url}, "url",
                "give username + password, or token_id + token_secret"),
    "vmware": (lambda url: {**VC, "url": url}, "url", "give username + password"),
    "openstack": (lambda url: {"type": "openstack", "auth": {"auth_url": url, **OS_AUTH}},
                  "auth.auth_url", "the auth block's application credential or "
                  "username + password, or a clouds.yaml cloud"),
    "aws": (lambda url: {"type": "aws", "region": "eu-west-1", "endpoint_url": url},
            "endpoint_url", "AWS credentials come from the default credential chain"),
    "baremetal": (lambda url: {"type": "baremetal", "inventory": "inventory.db",
                               "boot_url": url, "dhcp": {"enabled": False}},
                  "boot_url", "the boot server asks machines for none"),
}
USERINFO = ["alice@", f"alice:{SECRET}@", f":{SECRET}@"]


def _checked(home: Home) -> dict[str, Any]:
    """``config check``'s row for instance ``p``, which must have failed."""
    result = home.invoke("config", "check", "-o", "json")
    assert result.exit_code == 1, result.output
    (row,) = [r for r in json.loads(result.output) if r["part"] == "providers.p"]
    assert isinstance(row, dict)
    return row


@pytest.mark.parametrize("userinfo", USERINFO)
@pytest.mark.parametrize("kind", sorted(TYPES))
def test_userinfo_written_in_a_provider_url_is_refused_on_load(
        home: Home, kind: str, userinfo: str) -> None:
    block, field, where_instead = TYPES[kind]
    home.providers = {"p": block(f"https://{userinfo}127.0.0.1:8443")}
    home.write_config()
    result = home.invoke("config", "check")
    assert_usage_error(result.exit_code, result.output, f"providers.p.{field}")
    assert SECRET not in result.output
    if userinfo != f":{SECRET}@":  # a password without a user is told as such
        assert f"no user or password in the url: {where_instead}" in result.output


@pytest.mark.parametrize("userinfo", USERINFO)
@pytest.mark.parametrize("kind", sorted(TYPES))
def test_userinfo_in_a_provider_url_given_by_a_reference_is_refused(
        home: Home, kind: str, userinfo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    block, field, where_instead = TYPES[kind]
    monkeypatch.setenv("QA_PROVIDER_URL", f"https://{userinfo}127.0.0.1:8443")
    home.providers = {"p": block("${env:QA_PROVIDER_URL}")}
    home.write_config()
    row = _checked(home)
    assert SECRET not in json.dumps(row)
    assert row["key"] == f"providers.p.{field}", row
    if userinfo != f":{SECRET}@":
        assert row["error"].startswith(f"no user or password in the url: {where_instead}"), row
    # QA: the file shows no credentials; the message must say where the value came from.
    assert row["error"].endswith(" (the value of ${env:QA_PROVIDER_URL})"), row


@pytest.mark.parametrize("kind", ["aws", "baremetal"])
def test_a_referenced_url_follows_every_url_rule(
        home: Home, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    block, field, _ = TYPES[kind]
    monkeypatch.setenv("QA_PROVIDER_URL", "http://127.0.0.1:8443/?x=1")
    home.providers = {"p": block("${env:QA_PROVIDER_URL}")}
    home.write_config()
    row = _checked(home)
    assert row["key"] == f"providers.p.{field}", row
    assert row["error"] == ("a server URL has no query or fragment (no '?' or '#') "
                            "(the value of ${env:QA_PROVIDER_URL})"), row


@pytest.mark.parametrize("userinfo", USERINFO)
def test_userinfo_in_the_boot_url_of_a_baremetal_file_block_is_refused(
        tmp_path: Path, userinfo: str) -> None:
    from talprov.cli.baremetal import baremetal

    block = tmp_path / "bm.yaml"
    block.write_text(yaml.safe_dump({"inventory": str(tmp_path / "inv.sqlite"),
                                     "boot_url": f"http://{userinfo}10.0.0.5:8081"}))
    result = CliRunner().invoke(baremetal, ["--file", str(block), "list"])
    assert_usage_error(result.exit_code, result.output, f"{block}.boot_url")
    assert SECRET not in result.output
    if userinfo != f":{SECRET}@":
        assert "the boot server asks machines for none" in result.output


@pytest.mark.parametrize("value", [f"{SECRET}-token", f"{SECRET}://host.example"])
def test_a_referenced_url_that_is_no_url_is_refused_without_its_value(
        home: Home, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review: a reference that holds something else than a url (a token named in
    the wrong setting) was refused with "e.g. https://<its value>", or with the
    part before "://": a secret in the message."""
    block, field, _ = TYPES["aws"]
    monkeypatch.setenv("QA_PROVIDER_URL", value)
    home.providers = {"p": block("${env:QA_PROVIDER_URL}")}
    home.write_config()
    row = _checked(home)
    assert row["key"] == f"providers.p.{field}", row
    assert row["error"].startswith("expected an http(s) URL"), row
    assert SECRET not in json.dumps(row)
