"""How BMC errors become talprov errors (talprov.baremetal.errors)."""

from __future__ import annotations

import json
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
