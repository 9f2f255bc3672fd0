"""QA's URL findings: each a one-line load error naming the field, never a password.

A Proxmox url with a query or port 0, an Image Factory URL naming one of its
endpoints (an image URL pasted whole) or with a bad
percent escape, an ftp:// URL (the message said "e.g. https://ftp://..."), an
empty ca_file ("": no such file), and a vSphere url with user:pass@ (ignored
without a word; Proxmox refuses it since 683d434) -- and any other provider url.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import Home
from tests.unit.test_cli import assert_usage_error

SECRET = "pw-QA-url-5c3"
PVE = {"type": "proxmox", "username": "root@pam", "password": "secret-pass"}
VC = {"type": "vmware", "username": "talprov@vsphere.local", "password": "secret-pass"}


@pytest.mark.parametrize(("block", "field", "words"), [
    ({**PVE, "url": "https://127.0.0.1:8006/?x=1"}, "url", "no query"),
    ({**PVE, "url": "https://127.0.0.1:8006#top"}, "url", "no query"),
    ({**PVE, "url": "https://127.0.0.1:0"}, "url", "1 to 65535"),
    ({**PVE, "url": "ftp://pve.example:8006"}, "url", "not ftp://"),
    ({**PVE, "url": "https://127.0.0.1:8006", "ca_file": ""}, "ca_file", "empty"),
    ({**VC, "url": f"https://admin:{SECRET}@vc.example/sdk"}, "url", "no user or password"),
    ({**VC, "url": f"https://admin:{SECRET}@vc.example"}, "url", "no user or password"),
    ({"type": "aws", "region": "eu-west-1",
      "endpoint_url": f"http://key:{SECRET}@127.0.0.1:5000"}, "endpoint_url",
     "AWS credentials come from the default credential chain"),
    ({"type": "openstack", "auth": {"auth_url": f"https://u:{SECRET}@keystone.example/v3",
                                    "application_credential_id": "ac",
                                    "application_credential_secret": "acs"}},
     "auth.auth_url", "no user or password"),
    ({"type": "openstack", "auth": {"auth_url": "https://keystone.example/v3/%ZZ"}},
     "auth.auth_url", "percent"),
    # QA: an empty url was "expected an http(s) URL with a host, e.g. https://".
    ({**PVE, "url": ""}, "url", "empty: expected an http(s) URL with a host, e.g. https://"),
    ({**PVE, "url": "  "}, "url", "empty"),
    # QA: an '@' in the path was told to percent-encode a user name or password.
    ({"type": "aws", "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:5000/x@y"},
     "endpoint_url", "in a path write it %40"),
])
def test_a_provider_url_or_ca_file_that_cannot_be_used_is_refused_on_load(
        home: Home, block: dict[str, Any], field: str, words: str) -> None:
    home.providers = {"p": block}
    home.write_config()
    for command in (("config", "check"), ("machine", "list")):
        result = home.invoke(*command)
        said = result.output  # stderr included
        assert_usage_error(result.exit_code, said, f"providers.p.{field}", words)
        assert SECRET not in said
        assert "https://ftp://" not in said
        assert not said.rstrip().endswith("https://")


@pytest.mark.parametrize(("factory", "field", "words"), [
    ({"url": f"https://factory.example/image/{'ab' * 32}/v1.9.0/metal-amd64.iso"}, "url",
     "without /image"),
    ({"url": "https://factory.example/schematics"}, "url", "without /image"),
    ({"url": f"https://team%ZZ:{SECRET}@factory.example"}, "url", "percent"),
    ({"url": "https://factory.example/?x=1"}, "url", "no query"),
    ({"url": "ftp://factory.example"}, "url", "not ftp://"),
    ({"url": "factory.example"}, "url", "e.g. https://factory.example"),
    ({"url": "https://factory.example", "ca_file": ""}, "ca_file", "empty"),
    # QA: it said "e.g. https://", which is no example of anything.
    ({"url": ""}, "url", "empty: leave the setting out for https://factory.talos.dev"),
    ({"url": " "}, "url", "or give a mirror's URL, e.g. https://factory.example.com"),
])
def test_a_factory_url_or_ca_file_that_cannot_be_used_is_refused_on_load(
        home: Home, factory: dict[str, str], field: str, words: str) -> None:
    home.write_config(image_factory=factory)
    for command in (("config", "check"), ("machine", "list")):
        result = home.invoke(*command)
        said = result.output  # stderr included
        assert_usage_error(result.exit_code, said, f"image_factory.{field}", words)
        assert SECRET not in said
        assert "https://ftp://" not in said
        assert not said.rstrip().endswith("https://")


def test_a_factory_url_with_a_trailing_slash_and_credentials_is_still_fine(home: Home) -> None:
    home.write_config(image_factory={"url": f"https://team-a:{SECRET}@factory.example/"})
    assert home.invoke("machine", "list").exit_code == 0


@pytest.mark.parametrize("url", ["https://mirror.example/talos-factory",
                                 "https://nexus.example/repository/image/"])
def test_a_factory_mirror_under_a_path_prefix_is_fine(home: Home, url: str) -> None:
    # The client adds /schematics, /image/... to the URL as given, prefix and all;
    # a mirror's own folder may be called "image".
    home.write_config(image_factory={"url": url})
    assert home.invoke("machine", "list").exit_code == 0


def test_a_boot_url_with_credentials_says_why_bare_metal_takes_none(home: Home,
                                                                   tmp_path: Path) -> None:
    # QA: the message named "its username and password, token or credentials",
    # settings a bare-metal instance does not have.
    block = {"type": "baremetal", "inventory": str(tmp_path / "inv.sqlite"),
             "boot_url": f"http://boot:{SECRET}@10.0.0.5:8081"}
    home.providers = {"p": block}
    home.write_config()
    result = home.invoke("config", "check")
    said = result.output
    assert_usage_error(result.exit_code, said, "providers.p.boot_url", "no user or password",
                       "asks machines for none", "--bmc-user")
    assert "token or credentials" not in said
    assert SECRET not in said
    # The same rule for a --file block, which no talprov.yaml check sees.
    path = tmp_path / "bm.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in block.items() if k != "type"}))
    result = home.invoke("baremetal", "--file", str(path), "list")
    assert_usage_error(result.exit_code, result.output, "boot_url", "asks machines for none")
    assert SECRET not in result.output
