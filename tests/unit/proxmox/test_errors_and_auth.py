"""Errors, authentication and TLS against fakepve."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from talprov.providers.errors import AuthError, InvalidRequest
from talprov.providers.protocol import Runtime
from talprov.providers.types import Owner
from talprov.proxmox.client import PveClient
from talprov.proxmox.config import ProxmoxConfig
from talprov.proxmox.errors import TaskFailed
from talprov.proxmox.provider import ProxmoxProvider
from talprov.talos.factory import use_images
from talprov.testing import FakeClock
from tests.driving import context, deprovision, provision, run_step
from tests.emulators.fakepve import FakePveServer
from tests.unit.proxmox.conftest import ISO_URL, machine_request, password_config


def _requests(fakepve: FakePveServer, method: str, suffix: str) -> int:
    return sum(1 for m, p in fakepve.control("requests") if m == method and p.endswith(suffix))


def _fingerprint(ca_file: Path) -> str:
    cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def test_a_revoked_ticket_is_renewed_once(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner
) -> None:
    assert provider.list_machines(owner) == []
    fakepve.control("revoke_tickets")
    assert provider.list_machines(owner) == []
    assert _requests(fakepve, "POST", "/access/ticket") == 2


def test_a_401_after_renewal_is_an_auth_error(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner
) -> None:
    assert provider.list_machines(owner) == []
    fakepve.control("fail", method="GET", suffix="/cluster/resources", error="invalid_ticket")
    with pytest.raises(AuthError, match="401"):
        provider.list_machines(owner)
    # One renewal, not a loop.
    assert _requests(fakepve, "POST", "/access/ticket") == 2


def test_a_wrong_password_is_an_auth_error_without_secrets(
    fakepve: FakePveServer, runtime: Runtime
) -> None:
    config = password_config(fakepve, password="not-the-password")
    provider = ProxmoxProvider("lab", config, runtime, iso_url=lambda r: ISO_URL)
    with pytest.raises(AuthError) as caught:
        provider.list_machines(Owner("talprov-test", "lab"))
    assert "not-the-password" not in str(caught.value)
    assert "not-the-password" not in repr(config)
    health = provider.health()
    assert not health.ok
    assert "authentication" in health.message


def test_api_token_authentication(fakepve: FakePveServer, runtime: Runtime) -> None:
    fakepve.control("add_token", tokenid="talprov@pve!lab", secret="0b5e-token-secret")
    good = ProxmoxConfig(url=fakepve.url, token_id="talprov@pve!lab",
                         token_secret="0b5e-token-secret",
                         ca_file=str(fakepve.ca_file))
    assert ProxmoxProvider("lab", good, runtime).health().ok
    bad = ProxmoxConfig.model_validate({**good.model_dump(), "token_secret": "wrong-secret"})
    with pytest.raises(AuthError):
        PveClient(bad).get("read version", "version")
    # A token cannot be renewed: exactly one request, no ticket login.
    assert _requests(fakepve, "POST", "/access/ticket") == 0


def test_tls_is_verified_by_default(fakepve: FakePveServer) -> None:
    config = ProxmoxConfig(url=fakepve.url, username="root@pam",
                           password=fakepve.password)
    with pytest.raises(AuthError, match="TLS"):
        PveClient(config).get("read version", "version")


def test_fingerprint_pinning(fakepve: FakePveServer) -> None:
    base: dict[str, Any] = {"url": fakepve.url, "username": "root@pam",
                            "password": fakepve.password}
    pinned = ProxmoxConfig.model_validate({**base, "fingerprint": _fingerprint(fakepve.ca_file)})
    assert PveClient(pinned).get("read version", "version")["version"]
    wrong = ProxmoxConfig.model_validate({**base, "fingerprint": ":".join(["AB"] * 32)})
    # QA: the message said "(set ca_file or fingerprint)" although one was set.
    with pytest.raises(AuthError, match="does not match the pinned fingerprint"):
        PveClient(wrong).get("read version", "version")
    assert _requests(fakepve, "POST", "/access/ticket") == 1  # the wrong pin never logged in


def test_a_ca_file_that_did_not_sign_the_certificate_is_named(
    fakepve: FakePveServer, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_text(Path(certifi.where()).read_text())  # did not sign fakepve's
    config = ProxmoxConfig(url=fakepve.url, username="root@pam", password=fakepve.password,
                           ca_file=str(other_ca))
    with pytest.raises(AuthError, match="not signed by the CA in ca_file"):
        PveClient(config).get("read version", "version")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_only_when_asked(fakepve: FakePveServer) -> None:
    config = ProxmoxConfig(url=fakepve.url, username="root@pam", password=fakepve.password,
                           insecure=True)
    assert PveClient(config).get("read version", "version")["version"]


def test_parameter_errors_name_the_field(provider: ProxmoxProvider) -> None:
    with pytest.raises(InvalidRequest) as caught:
        provider.client.post("create VM", "nodes/pve1/qemu", vmid=150, cores="many")
    assert caught.value.field == "cores"


def test_a_failed_start_task_is_a_named_error(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock
) -> None:
    ctx = context(provider, machine_request("broken"), owner)
    fakepve.control("fail", method="POST", suffix="/status/start", error="qemu_exited_code")
    with pytest.raises(TaskFailed) as caught:
        provision(provider, [ctx], clock)
    assert "TASK ERROR: QEMU exited with code 1" in str(caught.value)
    assert f"start VM {ctx.state.vmid}" in str(caught.value)
    assert caught.value.exitstatus == "QEMU exited with code 1"


def test_a_failed_download_falls_back_to_uploading_from_the_cache(
    fakepve: FakePveServer, make_provider: Callable[..., ProxmoxProvider],
    owner: Owner, clock: FakeClock, tmp_path: Path,
) -> None:
    cached = tmp_path / "nocloud-amd64.iso"
    cached.write_bytes(b"\0" * 4096)

    class CacheOnly:
        authenticated = False  # a factory without credentials: nodes may download

        def download(self, url: str) -> Path:
            assert url == ISO_URL
            return cached

    provider = make_provider()
    use_images(provider.runtime, CacheOnly())  # type: ignore[arg-type]
    fakepve.control("fail", method="POST", suffix="/download-url",
                    error="error_archive_format_not_defined")
    ctx = context(provider, machine_request("offline"), owner)
    steps = {s.name: s for s in provider.steps()}
    run_step(steps["place"], ctx, clock)
    run_step(steps["ensure-iso"], ctx, clock)

    name = ctx.state.iso_volume.split("/", 1)[1] if ctx.state.iso_volume else ""
    assert name in fakepve.control("storages")["local"]["files"]
    assert _requests(fakepve, "POST", "/storage/local/upload") == 1


def test_a_given_iso_volume_skips_the_download(
    fakepve: FakePveServer, provider: ProxmoxProvider, owner: Owner, clock: FakeClock
) -> None:
    fakepve.control("set_storage", name="local", values={})
    request = machine_request("own-iso", provider_data={"iso": "local:iso/missing.iso"})
    ctx = context(provider, request, owner)
    steps = {s.name: s for s in provider.steps()}
    run_step(steps["place"], ctx, clock)
    with pytest.raises(InvalidRequest) as caught:
        run_step(steps["ensure-iso"], ctx, clock)
    assert caught.value.field == "iso"
    assert _requests(fakepve, "POST", "/download-url") == 0


#: The privileges docs/providers/proxmox.md asks for, by ACL path.
MINIMUM_PRIVILEGES = {
    "/vms": ["VM.Allocate", "VM.Audit", "VM.PowerMgmt", "VM.Config.Disk", "VM.Config.CDROM",
             "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.HWType",
             "VM.Config.Options"],
    "/storage/local": ["Datastore.Audit", "Datastore.AllocateTemplate", "Datastore.Allocate"],
    "/storage/local-lvm": ["Datastore.Audit", "Datastore.AllocateSpace"],
    "/nodes": ["Sys.Audit"],
}


@pytest.mark.parametrize("transfer", ["download", "upload"])
def test_a_token_with_the_documented_privileges_can_do_everything(
    fakepve: FakePveServer, runtime: Runtime, clock: FakeClock, tmp_path: Path, transfer: str,
) -> None:
    owner = Owner(installation="talprov-test", instance="lab")
    token = "talprov@pve!lab"
    fakepve.control("add_token", tokenid=token, secret="least-privilege-secret")
    for path, privs in MINIMUM_PRIVILEGES.items():
        fakepve.control("grant", user=token, path=path, privs=privs)
    if transfer == "download":
        # download-url is the one call that needs privileges on "/" (PVE's rule).
        fakepve.control("grant", user=token, path="/", privs=["Sys.Audit", "Sys.Modify"])
    cached = tmp_path / "talos.iso"
    cached.write_bytes(b"\0" * 2048)

    class CacheOnly:
        authenticated = False  # a factory without credentials: nodes may download

        def download(self, url: str) -> Path:
            return cached

    use_images(runtime, CacheOnly())  # type: ignore[arg-type]
    config = ProxmoxConfig.model_validate({
        "url": fakepve.url, "token_id": token, "token_secret": "least-privilege-secret",
        "ca_file": str(fakepve.ca_file), "iso_transfer": transfer,
    })
    provider = ProxmoxProvider("lab", config, runtime, iso_url=lambda r: ISO_URL)
    ctx = context(provider, machine_request("least"), owner)
    provision(provider, [ctx], clock)
    assert [m.request_id for m in provider.list_machines(owner)] == ["least"]
    deprovision(provider, ctx, clock)
    assert fakepve.vms() == []


def test_a_token_without_vm_allocate_is_refused(
    fakepve: FakePveServer, runtime: Runtime, owner: Owner, clock: FakeClock
) -> None:
    token = "talprov@pve!weak"
    fakepve.control("add_token", tokenid=token, secret="weak-token-secret")
    for path, privs in MINIMUM_PRIVILEGES.items():
        kept = [p for p in privs if p != "VM.Allocate"]
        fakepve.control("grant", user=token, path=path, privs=kept)
    fakepve.control("grant", user=token, path="/", privs=["Sys.Audit", "Sys.Modify"])
    config = ProxmoxConfig.model_validate({
        "url": fakepve.url, "token_id": token, "token_secret": "weak-token-secret",
        "ca_file": str(fakepve.ca_file),
    })
    provider = ProxmoxProvider("lab", config, runtime, iso_url=lambda r: ISO_URL)
    ctx = context(provider, machine_request("weak"), owner)
    with pytest.raises(AuthError, match="403"):
        provision(provider, [ctx], clock)
