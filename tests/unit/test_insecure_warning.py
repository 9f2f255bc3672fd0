"""An instance whose TLS verification is off (`insecure: true`) is warned about once,
by every command that builds it: `config check`, the `serve` log (QA: no warning
anywhere on 5788900)."""

from __future__ import annotations

import pytest

from talprov.cli.app import App
from tests.helpers import Home

PVE = {"type": "proxmox", "url": "https://pve.example.test:8006", "token_id": "root@pam!t",
       "token_secret": "s" * 20}
VCENTER = {"type": "vmware", "url": "https://vc.example.test/sdk", "username": "u",
           "password": "p" * 12}


def test_config_check_warns_once_per_instance_without_tls_verification(home: Home) -> None:
    home.providers["px-lab"] = {**PVE, "insecure": True}
    home.providers["vc-lab"] = {**VCENTER, "insecure": True}
    home.providers["px-prod"] = PVE
    home.write_config()
    result = home.invoke("config", "check")
    assert result.exit_code == 0, result.output
    for name in ("px-lab", "vc-lab"):
        line = f"warning: provider instance {name}: TLS verification is off (insecure: true)"
        assert result.stderr.count(line) == 1, result.stderr
    assert "px-prod: TLS" not in result.stderr


def test_only_an_instance_a_command_uses_is_warned_about(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    # QA: `machine create` for one instance warned about another it only built
    # alongside; `providers --health`, which asks it, must warn.
    home.providers["px-lab"] = {**PVE, "insecure": True}
    home.providers["vc-lab"] = {**VCENTER, "insecure": True}
    home.write_config()
    app = App(config_path=str(home.config_path), store_url=None)
    try:
        app.all_handles(used={"vc-lab"})
        app.all_handles(used={"vc-lab"})
        said = capsys.readouterr().err
        assert said.count("provider instance vc-lab: TLS verification is off") == 1, said
        assert "px-lab" not in said
        app.provider("px-lab")
        assert "provider instance px-lab: TLS verification is off" in capsys.readouterr().err
    finally:
        app.close()


def test_providers_health_warns_about_the_instance_it_asks(home: Home) -> None:
    home.providers["px-lab"] = {**PVE, "insecure": True}
    home.write_config()
    result = home.invoke("providers", "--health")
    assert "warning: provider instance px-lab: TLS verification is off" in result.stderr
