"""Boot-server alerts are counted in /metrics, scoped like every per-instance series.

The alerts are raised by the real boot-server logic against the instance's
inventory (a config token used from another address, then used again); the
service reads them from that inventory's audit log at scrape time, as it would
when ``talprov baremetal serve`` runs the boot server in another process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from talprov.baremetal.boot.http import BootHttp
from talprov.baremetal.boot.ipxe import install_plan
from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.inventory import BmcInfo, Inventory
from talprov.providers.types import MachineRequest
from tests.helpers import Home
from tests.unit.service.conftest import OTHER, READ, WRITE, Api, open_api

UUID = "6b4a1c2d-0000-4000-8000-00000000000a"
MAC = "52:54:00:12:34:56"


@pytest.fixture
def metal(home: Home) -> Iterator[tuple[Api, BootHttp]]:
    """The idle service with a bare-metal instance ``other`` (OTHER's scope) and the
    boot-server logic over its inventory."""
    block = {"inventory": str(home.root / "inventory.sqlite"),
             "boot_url": "http://127.0.0.1:9", "mirror_dir": str(home.root / "mirror")}
    home.providers["other"] = {"type": "baremetal", **block}
    home.write_config()
    config = BareMetalConfig.model_validate(block)
    inventory = Inventory(config.inventory)
    inventory.add("m0", uuid=UUID, macs=[MAC], bmc=BmcInfo())
    yield from ((api, BootHttp(config, inventory, "https://factory.invalid"))
                for api in open_api(home, workers=False))


def _install(boot: BootHttp) -> tuple[str, str]:
    """Allocate m0 with a config to fetch; the (uuid, token) of its boot script."""
    request = MachineRequest(id="r1", provider="other", talos_version="v1.13.9",
                             machine_config=SecretStr("version: v1alpha1\n"))
    boot.inventory.allocate("r1", "o", ["m0"])
    plan = install_plan(boot.config, request, "http://127.0.0.1:9/k", "http://127.0.0.1:9/i")
    boot.inventory.set_install("m0", "r1", plan, "the-config")
    script = boot.boot_script(UUID, MAC, "10.0.0.7")
    found = re.search(r"/config/([^/\s]+)/(\S+)", script)
    assert found is not None
    return found.group(1), found.group(2)


def _alerts(api: Api, token: dict[str, str]) -> dict[tuple[str, str], float]:
    text = api.request("GET", "/metrics", headers=token).text
    return {(m.group(1), m.group(2)): float(m.group(3)) for m in re.finditer(
        r'^talprov_boot_alerts_total\{provider="([^"]+)",reason="([^"]+)"\} (\S+)$', text,
        re.MULTILINE)}


def test_alerts_are_counted_by_instance_and_reason(metal: tuple[Api, BootHttp]) -> None:
    api, boot = metal
    assert _alerts(api, WRITE) == {("other", "config-refetch"): 0.0,
                                   ("other", "config-wrong-address"): 0.0,
                                   ("other", "script-without-dhcp"): 0.0}
    uuid, token = _install(boot)
    assert boot.take_config(uuid, token, "10.0.0.66") is None  # not the script's address
    assert boot.take_config(uuid, token, "10.0.0.7") == "the-config"
    assert boot.take_config(uuid, token, "10.0.0.7") is None  # used again
    assert boot.take_config(uuid, "guessed-token", "10.0.0.8") is None  # a guess: no alert
    counts = _alerts(api, WRITE)
    assert counts[("other", "config-wrong-address")] == 1.0
    assert counts[("other", "config-refetch")] == 1.0
    assert counts[("other", "script-without-dhcp")] == 0.0
    # The in-process counter agrees with what the scrape read from the audit log.
    assert boot.alerts.counts == {"config-wrong-address": 1, "config-refetch": 1}


def test_scoped_tokens_see_only_their_instances_alerts(metal: tuple[Api, BootHttp]) -> None:
    api, boot = metal
    uuid, token = _install(boot)
    boot.take_config(uuid, token, "10.0.0.66")
    assert _alerts(api, OTHER)[("other", "config-wrong-address")] == 1.0
    assert _alerts(api, READ) == {}  # scoped to "fake" only


def test_the_api_refuses_a_full_config_beside_an_omni_join(metal: tuple[Api, BootHttp]
                                                           ) -> None:
    # The bare-metal provider's pre-flight check runs before anything is recorded: a
    # joining machine is served the join documents only, never a v1alpha1 config.
    api, _ = metal
    body = {"id": "joins-1", "provider": "other", "talos_version": "v1.13.9",
            "config": "version: v1alpha1\nmachine:\n  type: worker\n",
            "join": {"api_url": "https://omni.example/?jointoken=CANARY-join-77"}}
    response = api.request("POST", "/v1/machine-requests", json=body, headers=WRITE)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "config"]
    assert "CANARY-join-77" not in response.text
    assert api.ctx.store.get_request("joins-1") is None


def test_an_unreadable_inventory_leaves_the_rest_of_the_scrape(
        metal: tuple[Api, BootHttp], monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from talprov.baremetal.provider import BareMetalProvider

    def broken(_self: BareMetalProvider) -> dict[str, int]:
        raise sqlite3.OperationalError("unable to open database file")

    api, _ = metal
    monkeypatch.setattr(BareMetalProvider, "boot_alert_counts", broken)
    response = api.request("GET", "/metrics", headers=WRITE)
    assert response.status_code == 200
    assert "talprov_requests{" in response.text
    assert _alerts(api, WRITE) == {}
