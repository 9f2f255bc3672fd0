"""An instance whose TLS verification is off (`insecure: true`) is warned about once,
by every command that builds it: `config check`, the `serve` log (QA: no warning
anywhere on 5788900)."""

from __future__ import annotations

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
