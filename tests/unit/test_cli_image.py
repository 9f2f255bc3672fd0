"""``talprov image`` input checks: a malformed version is a usage error, not "no assets"."""

from __future__ import annotations

import pytest
from click.testing import Result

from tests.helpers import Home

SCHEMATIC = ("customization:\n  systemExtensions:\n"
             "    officialExtensions: [siderolabs/iscsi-tools]\n")


@pytest.mark.parametrize("command", ["urls", "pull"])
@pytest.mark.parametrize("version", ["1.11", "v1.11", "latest"])
def test_malformed_version_exits_2_naming_the_option(home: Home, command: str,
                                                      version: str) -> None:
    schematic = home.root / "schematic.yaml"
    schematic.write_text(SCHEMATIC)
    extra = ["--asset", "aws-disk"] if command == "pull" else []
    result = home.invoke("image", command, "-f", str(schematic), "--version", version, *extra)
    assert result.exit_code == 2, result.output
    assert f"--version: '{version}' is not a Talos version" in result.output


def listed_urls(home: Home) -> Result:
    """``image urls -o json`` of :data:`SCHEMATIC` at v1.13.9."""
    schematic = home.root / "schematic.yaml"
    schematic.write_text(SCHEMATIC)
    return home.invoke("image", "urls", "-f", str(schematic), "--version", "v1.13.9",
                       "-o", "json")


def test_valid_version_lists_urls_for_it(home: Home) -> None:
    result = listed_urls(home)
    assert result.exit_code == 0, result.output
    assert "/v1.13.9/aws-amd64.raw.xz" in result.output


def test_urls_need_no_factory_password_and_pull_names_the_factory(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    # QA: `image urls` with an unset image_factory.password failed with "not usable
    # until its settings are fixed: ..." naming no Image Factory, although naming
    # the asset URLs asks no factory (they are computed here, and public).
    monkeypatch.delenv("IFPW_UNSET", raising=False)
    home.write_config(image_factory={"url": "https://factory.example.test",
                                     "username": "u", "password": "${env:IFPW_UNSET}"})
    listed = listed_urls(home)
    assert listed.exit_code == 0, listed.output
    assert "https://factory.example.test/image/" in listed.stdout
    pulled = home.invoke("image", "pull", "-f", str(home.root / "schematic.yaml"),
                         "--version", "v1.13.9",
                         "--asset", "aws-disk")
    assert pulled.exit_code == 1, pulled.output
    [line] = pulled.output.splitlines()
    assert line.startswith("talprov: error: the Image Factory https://factory.example.test "
                           "is not usable until its settings are fixed: "), line
    assert "image_factory.password" in line
    assert line.count("not usable") == 1
