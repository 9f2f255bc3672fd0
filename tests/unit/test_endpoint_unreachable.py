"""Every driver tells a call that never reached its endpoint (refused, a connect
timeout, a name not resolved: ``EndpointUnreachable``, the instance's outage)
from one the endpoint took and never answered (a read timeout: a plain
``Transient``, which may be that call's alone). No network: the SDKs' errors are
built as they raise them."""

from __future__ import annotations

import socket

import httpx
import pytest
import requests
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from talprov.aws.errors import translate as aws_translate
from talprov.baremetal.errors import redfish_error
from talprov.providers.errors import EndpointUnreachable, Transient, never_connected
from talprov.proxmox.errors import translate as pve_translate
from talprov.vmware.errors import translate as vmware_translate
from talprov.vmware.errors import vapi_transport_error

URL = "https://127.0.0.1:9"


def raised(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` raised from ``inner``, as an SDK wraps what it caught."""
    try:
        try:
            raise inner
        except BaseException as caught:
            raise outer from caught
    except BaseException as exc:
        return exc


def test_never_connected_reads_the_chain() -> None:
    refused = raised(requests.ConnectionError("pool"), ConnectionRefusedError(111, "refused"))
    assert never_connected(refused)
    assert never_connected(socket.gaierror(-2, "Name or service not known"))
    assert not never_connected(requests.ReadTimeout("read timed out"))
    assert not never_connected(TimeoutError("timed out"))


@pytest.mark.parametrize(("error", "unreachable"), [
    (EndpointConnectionError(endpoint_url=URL), True),
    (ReadTimeoutError(endpoint_url=URL), False),
])
def test_aws(error: Exception, unreachable: bool) -> None:
    got = aws_translate(error, "DescribeImages")
    assert isinstance(got, Transient)
    assert isinstance(got, EndpointUnreachable) is unreachable


@pytest.mark.parametrize(("error", "unreachable"), [
    (requests.ConnectTimeout("connect timed out"), True),
    (raised(requests.ConnectionError("pool"), ConnectionRefusedError(111, "refused")), True),
    (requests.ReadTimeout("read timed out"), False),
])
def test_proxmox(error: BaseException, unreachable: bool) -> None:
    got = pve_translate(error, "list VMs", endpoint=URL)
    assert isinstance(got, Transient)
    assert isinstance(got, EndpointUnreachable) is unreachable, got


def test_an_unreachable_bmc_is_the_machines_not_the_instances() -> None:
    # Each machine has its own BMC: one that never answers is that request's
    # trouble, and its attempts count (the request fails, the scaler replaces it).
    got = redfish_error(requests.ConnectTimeout("connect timed out"), "power state")
    assert isinstance(got, Transient)
    assert not isinstance(got, EndpointUnreachable)


@pytest.mark.parametrize(("error", "unreachable"), [
    (ConnectionRefusedError(111, "refused"), True),
    (TimeoutError("timed out"), False),
])
def test_vsphere_soap(error: BaseException, unreachable: bool) -> None:
    got = vmware_translate(error, "RetrieveProperties")
    assert isinstance(got, Transient)
    assert isinstance(got, EndpointUnreachable) is unreachable


@pytest.mark.parametrize(("error", "unreachable"), [
    (httpx.ConnectError("refused"), True),
    (httpx.ConnectTimeout("connect timed out"), True),
    (httpx.ReadTimeout("read timed out"), False),
])
def test_vsphere_rest(error: BaseException, unreachable: bool) -> None:
    got = vapi_transport_error(error, "list tags")
    assert isinstance(got, Transient)
    assert isinstance(got, EndpointUnreachable) is unreachable


def test_openstack() -> None:
    from keystoneauth1 import exceptions as ksa

    from talprov.openstack.errors import translate as os_translate

    refused = raised(ksa.ConnectFailure("Unable to establish connection"),
                     ConnectionRefusedError(111, "refused"))
    assert isinstance(os_translate(refused, "list servers"), EndpointUnreachable)
    assert isinstance(os_translate(ksa.ConnectTimeout("timed out"), "list servers"),
                      EndpointUnreachable)
    dropped = os_translate(raised(ksa.ConnectFailure("aborted"),
                                  ConnectionResetError(104, "reset by peer")), "list servers")
    assert isinstance(dropped, Transient)
    assert not isinstance(dropped, EndpointUnreachable)
