"""Redfish power calls share one session per BMC (DMTF DSP0266's session login:
``POST /redfish/v1/SessionService/Sessions``, ``X-Auth-Token``, ``DELETE`` of the
session's ``Location`` to log out), against the session-keeping emulator.

Before, every power call of the provider built a new client: it read the service
root, logged in, listed the systems and read the system before doing anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.power.base import PowerState
from talprov.baremetal.provider import BareMetalProvider
from talprov.baremetal.records import BmcInfo
from talprov.providers.protocol import Runtime
from tests.emulators.baremetal.redfish_sessions import SESSIONS, RedfishBmc, redfish_bmc
from tests.emulators.baremetal.sushy import PASSWORD, USER


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[RedfishBmc]:
    with redfish_bmc(tmp_path) as running:
        yield running


def provider_with(bmc: RedfishBmc, tmp_path: Path) -> BareMetalProvider:
    config = BareMetalConfig(inventory=str(tmp_path / "inventory.db"),
                             boot_url="http://10.0.0.5:8081", bmc_min_interval=0)
    provider = BareMetalProvider("rack", config, Runtime(cache_dir=tmp_path))
    provider.inventory.add("m1", uuid=None, macs=["52:54:00:00:00:01"],
                           bmc=BmcInfo(kind="redfish", address=bmc.url, username=USER,
                                       password_ref=PASSWORD))
    return provider


def test_power_calls_share_one_session_and_close_logs_out(
    bmc: RedfishBmc, tmp_path: Path,
) -> None:
    provider = provider_with(bmc, tmp_path)
    machine = provider.inventory.get("m1")
    assert machine is not None
    assert provider.power(machine).power_state() == PowerState.OFF  # logs in
    first = len(bmc.requests())
    per_call = []
    for _ in range(3):
        before = len(bmc.requests())
        assert provider.power(machine).power_state() == PowerState.OFF
        per_call.append(len(bmc.requests()) - before)
    # One GET of the system per state read: no root, login or systems listing again.
    assert per_call == [1, 1, 1], bmc.requests()[first:]
    asked = bmc.requests()
    logins = [r for r in asked if r["method"] == "POST" and r["path"] == SESSIONS]
    assert len(logins) == 1
    assert {r["auth"] for r in asked[first:]} == {"token"}
    assert bmc.open_sessions() == 1
    before = len(bmc.requests())
    provider.power(machine).power_on()  # the state, then the reset action
    assert [r["method"] for r in bmc.requests()[before:]] == ["GET", "POST"]

    provider.close()
    assert bmc.open_sessions() == 0  # logged out: DELETE of the session's Location
    assert asked != bmc.requests()
    assert bmc.requests()[-1]["method"] == "DELETE"
    provider.close()  # idempotent


def test_an_expired_session_is_logged_into_again_once(bmc: RedfishBmc, tmp_path: Path) -> None:
    provider = provider_with(bmc, tmp_path)
    machine = provider.inventory.get("m1")
    assert machine is not None
    power = provider.power(machine)
    assert power.power_state() == PowerState.OFF
    bmc.expire_sessions()  # the BMC's session timeout
    before = len(bmc.requests())
    assert provider.power(machine).power_state() == PowerState.OFF
    again = bmc.requests()[before:]
    # The refused read (401), one login, the read again.
    assert [(r["method"], r["path"].removeprefix("/redfish/v1")) for r in again] == [
        ("GET", again[0]["path"].removeprefix("/redfish/v1")),
        ("POST", "/SessionService/Sessions"),
        ("GET", again[0]["path"].removeprefix("/redfish/v1"))]
    assert bmc.open_sessions() == 1
    provider.close()
