"""An instance whose TLS verification is off (`insecure: true`) is warned about once,
by every command that builds it: `config check`, the `serve` log (QA: no warning
anywhere on 5788900)."""

from __future__ import annotations

from pathlib import Path

import pytest

from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.provider import BareMetalProvider
from talprov.baremetal.records import BmcInfo
from talprov.cli.app import App
from talprov.providers.protocol import Runtime
from talprov.talos.factory import images_for
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


def tls_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if "TLS verification is off" in r.getMessage()]


def test_an_insecure_image_factory_is_warned_about_once_by_a_command_that_uses_it(
    home: Home, caplog: pytest.LogCaptureFixture
) -> None:
    # QA: image_factory.insecure: true said nothing anywhere.
    home.write_config(image_factory={"url": "https://factory.example.test", "insecure": True})
    app = App(config_path=str(home.config_path), store_url=None)
    try:
        runtime = app.runtime  # every command builds it: not yet a use of the factory
        assert "TLS verification is off" not in caplog.text
        images_for(runtime)
        images_for(runtime)
        said = tls_warnings(caplog)
        assert len(said) == 1, said
        assert "image_factory.insecure: true" in said[0]
        assert "https://factory.example.test" in said[0]
    finally:
        app.close()
    checked = home.invoke("config", "check")
    assert checked.exit_code == 0, checked.output
    assert checked.stderr.count("TLS verification is off (image_factory.insecure: true)") == 1


def test_a_verifying_image_factory_is_not_warned_about(
    home: Home, caplog: pytest.LogCaptureFixture
) -> None:
    home.write_config(image_factory={"url": "https://factory.example.test"})
    app = App(config_path=str(home.config_path), store_url=None)
    try:
        images_for(app.runtime)
    finally:
        app.close()
    assert "TLS verification is off" not in caplog.text


def test_a_bmc_without_tls_verification_is_warned_about_once_when_it_is_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = BareMetalConfig(inventory=str(tmp_path / "inventory.db"),
                             boot_url="http://10.0.0.5:8081", bmc_min_interval=0)
    provider = BareMetalProvider("rack", config, Runtime(cache_dir=tmp_path))
    try:
        for name, verify in (("m1", False), ("m2", True)):
            provider.inventory.add(name, uuid=None, macs=[f"52:54:00:00:00:0{name[-1]}"],
                                   bmc=BmcInfo(kind="redfish", address="https://127.0.0.1:9",
                                               username="u", password_ref="pw-" + name,
                                               verify_tls=verify))
        assert "TLS verification is off" not in caplog.text  # recorded, not used yet
        for name in ("m1", "m1", "m2"):
            machine = provider.inventory.get(name)
            assert machine is not None
            provider.power(machine)  # builds the driver; connects only when asked
        said = tls_warnings(caplog)
        assert len(said) == 1, said
        assert "machine m1" in said[0]
        assert "verify_tls: false" in said[0]
        assert "pw-m1" not in caplog.text
    finally:
        provider.close()
