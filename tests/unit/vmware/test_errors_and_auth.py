"""TLS modes, session renewal, credential errors and fault translation of the vSphere driver."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from talprov.providers.errors import (
    AuthError,
    CapacityError,
    InstanceAccessRefused,
    InvalidRequest,
    NotFound,
    Transient,
)
from talprov.providers.types import Owner
from talprov.testing import FakeClock
from talprov.vmware import sdk
from talprov.vmware.config import VSphereConfig
from talprov.vmware.errors import TaskFailed, task_error, translate
from talprov.vmware.provider import VSphereProvider
from tests.driving import context, provision
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.autoscaler.certs import Authority
from tests.unit.vmware.conftest import machine_request
from tests.unit.vmware.observe import terminate_sessions_of

vim = sdk.vim()
vmodl = sdk.vmodl()


def test_pinned_thumbprint_is_accepted_and_a_wrong_one_refused(
    make_provider: Callable[..., VSphereProvider], vcsim: VcsimServer, owner: Owner,
) -> None:
    pinned = make_provider(ca_file=None, thumbprint=vcsim.thumbprint())
    assert pinned.health().ok
    assert pinned.list_machines(owner) == []
    wrong = "AA:" * 31 + "AA"
    refused = make_provider(ca_file=None, thumbprint=wrong)
    with pytest.raises(AuthError, match="thumbprint"):
        refused.list_machines(owner)
    assert not refused.health().ok


def test_an_untrusted_certificate_is_refused_by_default(
    make_provider: Callable[..., VSphereProvider], owner: Owner,
) -> None:
    # No ca_file: the system trust store does not know vcsim's certificate.
    provider = make_provider(ca_file=None)
    with pytest.raises(AuthError, match="TLS verification"):
        provider.list_machines(owner)
    assert make_provider(ca_file=None, insecure=True).health().ok


def test_a_certificate_the_ca_file_did_not_sign_is_named_as_such(
    make_provider: Callable[..., VSphereProvider], owner: Owner, tmp_path: Path,
) -> None:
    # A ca_file is set, but another CA signed vCenter's certificate: "set ca_file"
    # would send the operator to a setting that is already there.
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(Authority("not-vcenters-ca").pem.cert)
    provider = make_provider(ca_file=str(other_ca))
    with pytest.raises(AuthError) as raised:
        provider.list_machines(owner)
    assert "not signed by the CA in ca_file" in str(raised.value)
    assert "set ca_file" not in str(raised.value)


def test_wrong_password_is_an_auth_error_without_the_password(
    make_provider: Callable[..., VSphereProvider], owner: Owner,
) -> None:
    provider = make_provider(password="not-the-password-123")
    with pytest.raises(AuthError) as caught:
        provider.list_machines(owner)
    assert "not-the-password-123" not in str(caught.value)
    assert "not-the-password-123" not in repr(provider.config)


def test_an_ended_session_is_renewed_once(
    provider: VSphereProvider, vcsim: VcsimServer, owner: Owner, clock: FakeClock,
) -> None:
    ctx = context(provider, machine_request("s1"), owner)
    provision(provider, [ctx], clock)
    first = provider.client._session()
    assert terminate_sessions_of(vcsim) >= 1
    assert [m.request_id for m in provider.list_machines(owner)] == ["s1"]
    assert provider.client._session() is not first


def test_secrets_stay_out_of_events_state_and_errors(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
) -> None:
    request = machine_request("p1")
    ctx = context(provider, request, owner)
    provision(provider, [ctx], clock)
    secret = "secret-p1"
    assert secret in request.machine_config.get_secret_value()
    assert secret not in " ".join(ctx.events)
    assert secret not in ctx.state.model_dump_json()
    assert provider.config.password.get_secret_value() not in repr(provider.config)


def test_unknown_inventory_names_fail_the_request_naming_the_field(
    provider: VSphereProvider, owner: Owner, clock: FakeClock,
) -> None:
    data = {"cluster": "DC0_C0", "datastore": "no-such-datastore"}
    ctx = context(provider, machine_request("n1", provider_data=data), owner)
    with pytest.raises(InvalidRequest) as caught:
        provision(provider, [ctx], clock)
    assert caught.value.field == "provider_data.datastore"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (vim.fault.DuplicateName(name="w1"), InvalidRequest),
        (vim.fault.InsufficientResourcesFault(), CapacityError),
        (vim.fault.InsufficientMemoryResourcesFault(), CapacityError),
        (vim.fault.NoPermission(privilegeId="VirtualMachine.Inventory.Create"), AuthError),
        (vim.fault.NotAuthenticated(), InstanceAccessRefused),
        (vim.fault.InvalidLogin(), InstanceAccessRefused),
        (vim.fault.InvalidPowerState(), Transient),
        (vmodl.fault.ManagedObjectNotFound(), NotFound),
        (vmodl.fault.InvalidArgument(invalidProperty="spec.location.pool"), InvalidRequest),
        (ConnectionResetError(), Transient),
    ],
)
def test_faults_map_to_talprov_errors(fault: BaseException, expected: type) -> None:
    error = translate(fault, "clone VM w1")
    assert type(error) is expected
    assert str(error).startswith("clone VM w1: ")


def _failed_task_info(fault: BaseException) -> Any:
    """A TaskInfo of a failed task, as vCenter reports it."""
    return vim.TaskInfo(state="error", error=vmodl.LocalizedMethodFault(
        fault=fault, localizedMessage=type(fault).__name__))


def test_a_failed_task_carries_its_fault() -> None:
    error = task_error(_failed_task_info(vim.fault.InvalidPowerState()), "power on VM vm-1")
    assert isinstance(error, TaskFailed)
    assert error.fault == "InvalidPowerState"
    capacity = task_error(_failed_task_info(vim.fault.InsufficientResourcesFault()), "clone")
    assert isinstance(capacity, CapacityError)


def test_config_validation() -> None:
    base = {"url": "https://vc.example.net/sdk", "username": "u", "password": "p"}
    assert VSphereConfig.model_validate(base).host_port == ("vc.example.net", 443)
    with pytest.raises(ValidationError):
        VSphereConfig.model_validate({**base, "url": "http://vc.example.net/sdk"})
    with pytest.raises(ValidationError):
        VSphereConfig.model_validate({**base, "insecure": True, "ca_file": "/x.pem"})
    with pytest.raises(ValidationError):
        VSphereConfig.model_validate({**base, "thumbprint": "AA:BB"})
    sha1 = ":".join(["ab"] * 20)
    assert VSphereConfig.model_validate({**base, "thumbprint": sha1}).thumbprint_hex == "ab" * 20


def test_an_http_status_pyvmomi_does_not_read_is_named_not_called_unreachable() -> None:
    # pyVmomi raises a bare HTTPException("503 Service Unavailable") for an answer
    # other than 200 or 500 (a proxy before vCenter, a restarting vCenter): vCenter,
    # or something in its place, answered; "unreachable (connection failed)" hid that.
    error = translate(http.client.HTTPException("503 Service Unavailable"),
                      "look up template t", endpoint="https://vc.example/sdk")
    assert type(error) is Transient
    assert str(error) == ("look up template t at https://vc.example:443: "
                          "vCenter answered HTTP 503 Service Unavailable")
