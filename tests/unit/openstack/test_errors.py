"""The one error translation: SDK and keystoneauth errors → talprov errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from keystoneauth1 import exceptions as ksa
from openstack import exceptions as sdk

from talprov.openstack.errors import openstack_errors, translate
from talprov.providers.errors import (
    AuthError,
    CapacityError,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    Transient,
)


def http_error(status: int, body: Any, headers: dict[str, str] | None = None) -> Exception:
    response = requests.Response()
    response.status_code = status
    response.headers.update({"Content-Type": "application/json", **(headers or {})})
    response._content = json.dumps(body).encode()
    try:
        sdk.raise_from_response(response)
    except sdk.HttpException as exc:
        return exc
    raise AssertionError("no exception")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, {"forbidden": {"code": 403, "message": "Quota exceeded for cores: Requested 4, "
                                                     "but already used 20 of 20 cores"}},
         QuotaExceeded),
        (409, {"NeutronError": {"type": "OverQuota", "message": "Quota exceeded for "
                                "resources: ['port'].", "detail": ""}}, QuotaExceeded),
        (403, {"forbidden": {"code": 403, "message": "Policy doesn't allow "
                                                     "os_compute_api:servers:create"}},
         AuthError),
        (401, {"error": {"code": 401, "message": "The request you have made requires "
                                                 "authentication."}}, AuthError),
        (404, {"itemNotFound": {"code": 404, "message": "Instance x could not be found."}},
         NotFound),
        (400, {"badRequest": {"code": 400, "message": "Invalid flavorRef"}}, InvalidRequest),
        (400, {"badRequest": {"code": 400, "message": "No valid host was found. "}},
         CapacityError),
        (409, {"conflictingRequest": {"code": 409, "message": "Port x is still in use."}},
         Transient),
        (500, {"computeFault": {"code": 500, "message": "Unexpected API Error."}}, Transient),
        (503, {"serviceUnavailable": {"code": 503, "message": "down"}}, Transient),
    ],
)
def test_http_statuses(status: int, body: Any, expected: type[Exception]) -> None:
    error = translate(http_error(status, body), "create server")
    assert type(error) is expected
    assert str(error).startswith(f"create server: HTTP {status}")


@pytest.mark.parametrize("status", [405, 410, 412, 413, 415, 422])
def test_an_unlisted_4xx_is_a_permanent_error_naming_the_call_and_status(status: int) -> None:
    error = translate(http_error(status, {"error": {"message": "no"}}), "create port")
    assert isinstance(error, InvalidRequest)
    assert error.permanent
    assert str(error).startswith(f"create port: HTTP {status}")


@pytest.mark.parametrize("status", [408, 425, 429])
def test_timeout_too_early_and_too_many_requests_stay_transient(status: int) -> None:
    assert type(translate(http_error(status, {}), "create port")) is Transient
    identity = ksa.http.from_response(_keystone_response(status), "POST", "/v3/auth/tokens")
    assert type(translate(identity, "authenticate")) is Transient


def test_an_unlisted_identity_4xx_is_permanent() -> None:
    identity = ksa.http.from_response(_keystone_response(405), "POST", "/v3/auth/tokens")
    error = translate(identity, "authenticate")
    assert error.permanent
    assert "HTTP 405" in str(error)


def _keystone_response(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update({"Content-Type": "application/json"})
    response._content = b"{}"
    return response


def test_retry_after_is_kept() -> None:
    error = translate(http_error(429, {"overLimit": {"code": 429, "message": "slow down"}},
                                 {"Retry-After": "12"}), "list servers")
    assert isinstance(error, Transient)
    assert error.retry_after == 12


def test_connection_and_tls_failures() -> None:
    assert isinstance(translate(ksa.ConnectFailure("refused"), "x"), Transient)
    tls = translate(ksa.SSLError("certificate verify failed"), "x")
    assert isinstance(tls, AuthError)
    assert "ca_file" in str(tls)
    assert isinstance(translate(ksa.http.Unauthorized(), "x"), AuthError)
    assert isinstance(translate(sdk.DuplicateResource("two"), "find network"), InvalidRequest)


def test_context_manager_chains_and_leaves_other_errors_alone() -> None:
    with pytest.raises(NotFound) as caught, openstack_errors("get server"):
        raise http_error(404, {"itemNotFound": {"code": 404, "message": "gone"}})
    assert isinstance(caught.value.__cause__, sdk.NotFoundException)
    with pytest.raises(KeyError), openstack_errors("get server"):
        raise KeyError("not an SDK error")
