"""``talprov image`` input checks: a malformed version is a usage error, not "no assets"."""

from __future__ import annotations

import pytest

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


def test_valid_version_lists_urls_for_it(home: Home) -> None:
    schematic = home.root / "schematic.yaml"
    schematic.write_text(SCHEMATIC)
    result = home.invoke("image", "urls", "-f", str(schematic), "--version", "v1.13.9",
                         "-o", "json")
    assert result.exit_code == 0, result.output
    assert "/v1.13.9/aws-amd64.raw.xz" in result.output
