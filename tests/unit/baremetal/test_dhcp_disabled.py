"""``dhcp: {enabled: false}`` needs no ``interface_address`` (QA: it was still
required, so turning the responder off meant inventing an address)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from talprov.baremetal.config import DhcpConfig
from tests.helpers import Home
from tests.unit.test_cli import assert_usage_error


def block(tmp_path: Path, dhcp: dict[str, object]) -> dict[str, object]:
    return {"type": "baremetal", "inventory": str(tmp_path / "inv.sqlite"),
            "boot_url": "http://127.0.0.1:8081", "dhcp": dhcp}


def test_a_disabled_responder_needs_no_interface_address(home: Home, tmp_path: Path) -> None:
    home.providers = {"bm": block(tmp_path, {"enabled": False})}
    home.write_config()
    result = home.invoke("machine", "list")
    assert result.exit_code == 0, result.output
    assert DhcpConfig(enabled=False).interface_address is None


def test_an_enabled_responder_still_needs_it(home: Home, tmp_path: Path) -> None:
    home.providers = {"bm": block(tmp_path, {"enabled": True})}
    home.write_config()
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, "providers.bm.dhcp.interface_address",
                       "enabled")
    with pytest.raises(ValidationError):
        DhcpConfig()
