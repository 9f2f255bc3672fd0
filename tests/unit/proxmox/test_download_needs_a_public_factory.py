"""``iso_transfer: download`` with an Image Factory that has credentials (QA).

A node's download-url carries no credentials, and an authenticated factory
serves images to their owner only: every download would be refused and the
request waited for the operator forever. The combination is refused when the
config loads, naming the setting and what to set instead.
"""

from __future__ import annotations

import pytest

from tests.helpers import Home

FACTORY_PASSWORD = "factory-pw-QA-2b1"
PVE = {"type": "proxmox", "url": "https://127.0.0.1:1", "username": "root@pam",
       "password": "secret-pass"}


@pytest.mark.parametrize("factory", [
    {"url": "https://factory.example.test", "username": "team-a",
     "password": FACTORY_PASSWORD},
    {"url": f"https://team-a:{FACTORY_PASSWORD}@factory.example.test"},
])
@pytest.mark.parametrize("command", [("config", "check"), ("machine", "list")])
def test_download_with_an_authenticated_factory_is_refused_at_load(
        home: Home, factory: dict[str, str], command: tuple[str, ...]) -> None:
    home.providers = {"pve": {**PVE, "iso_transfer": "download"}}
    home.write_config(image_factory=factory)
    result = home.invoke(*command)
    said = result.output + (result.stderr or "")
    assert result.exit_code == 2, said
    assert "providers.pve.iso_transfer" in said
    assert "iso_transfer: upload" in said
    assert FACTORY_PASSWORD not in said
    assert "Traceback" not in said


@pytest.mark.parametrize("transfer", ["auto", "upload"])
def test_upload_and_auto_are_fine_with_an_authenticated_factory(
        home: Home, transfer: str) -> None:
    home.providers = {"pve": {**PVE, "iso_transfer": transfer}}
    home.write_config(image_factory={"url": "https://factory.example.test",
                                     "username": "team-a", "password": FACTORY_PASSWORD})
    assert home.invoke("machine", "list").exit_code == 0


def test_download_is_fine_with_a_factory_without_credentials(home: Home) -> None:
    home.providers = {"pve": {**PVE, "iso_transfer": "download"}}
    home.write_config(image_factory={"url": "https://factory.example.test"})
    assert home.invoke("machine", "list").exit_code == 0
