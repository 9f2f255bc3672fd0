"""A refused password or a certificate that does not verify is the instance's trouble,
not the request's: the request stays provisioning with the error recorded and goes on,
without `machine retry`, once the operator fixes the settings (QA: on 5788900 both
failed the request for good at step place, "permanent error", even requests created
after the instance was known bad)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import certifi

from talprov.providers.protocol import Provider, Runtime
from talprov.proxmox.provider import ProxmoxProvider
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.emulators.fakepve import FakePveServer
from tests.unit.instance_access import fails_then_heals
from tests.unit.proxmox.conftest import ISO_URL, machine_request, password_config


def _reconciler(store: Store, server: FakePveServer, runtime: Runtime, **settings: str
                ) -> Reconciler:
    provider = ProxmoxProvider("lab", password_config(server, **settings), runtime,
                               iso_url=lambda request: ISO_URL)
    return Reconciler(store, {"lab": ProviderHandle(cast(Provider, provider), 4)}, runtime)


def test_a_wrong_password_blocks_requests_until_it_is_fixed(
    fakepve: FakePveServer, runtime: Runtime, clock: FakeClock, tmp_path: Path
) -> None:
    fails_then_heals(
        tmp_path, clock, machine_request,
        broken=lambda store: _reconciler(store, fakepve, runtime, password="not-the-password"),
        fixed=lambda store: _reconciler(store, fakepve, runtime),
        says="authentication failure", secret="not-the-password")


def test_an_unverified_certificate_blocks_requests_until_it_is_fixed(
    fakepve: FakePveServer, runtime: Runtime, clock: FakeClock, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    # A CA that did not sign fakepve's certificate: the system's bundle.

    other_ca.write_text(Path(certifi.where()).read_text())
    fails_then_heals(
        tmp_path, clock, machine_request,
        broken=lambda store: _reconciler(store, fakepve, runtime, ca_file=str(other_ca)),
        fixed=lambda store: _reconciler(store, fakepve, runtime),
        says="not signed by the CA in ca_file", secret=fakepve.password)
