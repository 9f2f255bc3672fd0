"""How BMC errors become talprov errors (talprov.baremetal.errors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest
import requests
from sushy import exceptions as sushy_errors

from talprov.baremetal.errors import redfish_error
from talprov.providers.errors import AuthError, InvalidRequest, NotFound, Transient


def sushy_error(status: int) -> BaseException:
    response = requests.Response()
    response.status_code = status
    response.headers["Content-Type"] = "application/json"
    response._content = json.dumps(
        {"error": {"code": "Base.1.0.GeneralError", "message": "no"}}).encode()
    try:
        sushy_errors.raise_for_response("POST", "https://bmc/redfish/v1/x", response)
    except sushy_errors.HTTPError as exc:
        return cast(BaseException, exc)
    raise AssertionError("no exception")


@pytest.mark.parametrize("status", [400, 405, 406, 409, 412, 415])
def test_an_unlisted_4xx_is_a_permanent_error_naming_the_call_and_status(status: int) -> None:
    error = redfish_error(sushy_error(status), "power on m0")
    assert isinstance(error, InvalidRequest)
    assert error.permanent
    assert str(error).startswith(f"power on m0: HTTP {status}")


@pytest.mark.parametrize("status", [408, 425, 429, 500, 503])
def test_timeout_too_early_too_many_requests_and_5xx_stay_transient(status: int) -> None:
    assert type(redfish_error(sushy_error(status), "power on m0")) is Transient


def test_refused_credentials_and_missing_resources() -> None:
    assert type(redfish_error(sushy_error(401), "power on m0")) is AuthError
    assert type(redfish_error(sushy_error(403), "power on m0")) is AuthError
    assert type(redfish_error(sushy_error(404), "power on m0")) is NotFound


def test_a_redfish_call_without_a_readable_answer_is_worded_not_named() -> None:
    """A BMC that does not answer, or answers a page instead of Redfish's JSON, is
    said in words (QA: "get power: ConnectionError", "get power: JSONDecodeError")."""
    from talprov.baremetal.power.redfish import RedfishPower
    from tests.emulators.webpage import CANARY, web_page

    with web_page() as served, pytest.raises(Transient) as page:
        RedfishPower(served.url, "admin", "pw-canary-51a", min_interval=0,
                     attempts=1).power_state()
    assert str(page.value).startswith(f"get power at {served.url}: ")
    assert "did not answer as Redfish (not JSON)" in str(page.value)
    with pytest.raises(Transient) as refused:
        RedfishPower(served.url, "admin", "pw-canary-51a", min_interval=0,
                     attempts=1).power_state()  # the server is gone now
    assert "BMC unreachable (connection refused)" in str(refused.value)
    for error in (page.value, refused.value):
        for unwanted in ("Error", CANARY, "pw-canary"):
            assert unwanted not in str(error)


def test_health_says_why_the_inventory_cannot_be_read(tmp_path: Path) -> None:
    from talprov.baremetal.config import BareMetalConfig
    from talprov.baremetal.provider import BareMetalProvider
    from talprov.providers.protocol import Runtime

    inventory = tmp_path / "inventory.db"
    config = BareMetalConfig(inventory=str(inventory), boot_url="http://10.0.0.5:8081")
    provider = BareMetalProvider("rack", config, Runtime(cache_dir=tmp_path))
    assert provider.health().ok
    for suffix in ("", "-wal", "-shm"):
        Path(f"{inventory}{suffix}").unlink(missing_ok=True)
    inventory.write_bytes(b"not a database, but long enough to be read as one" * 40)
    health = provider.health()
    assert not health.ok
    assert health.message == f"inventory {inventory}: cannot be read (file is not a database)"
