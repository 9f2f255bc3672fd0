"""A refused login (vCenter's InvalidLogin) or a certificate that does not verify is
the instance's trouble, not the request's: the request stays provisioning with the
error recorded and goes on, without `machine retry`, once the operator fixes the
settings (QA: on 5788900 both failed the request for good at step place)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from talprov.providers.protocol import Runtime
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock
from talprov.vmware.provider import VSphereProvider
from tests.emulators.vcsim.fixture import VcsimServer
from tests.unit.instance_access import fails_then_heals
from tests.unit.vmware.conftest import machine_request, vsphere_config


@pytest.fixture
def reconciler_with(vcsim: VcsimServer, runtime: Runtime
                    ) -> Iterator[Callable[..., Callable[[Store], Reconciler]]]:
    made: list[VSphereProvider] = []

    def with_settings(**settings: Any) -> Callable[[Store], Reconciler]:
        def make(store: Store) -> Reconciler:
            provider = VSphereProvider("lab", vsphere_config(vcsim, **settings), runtime)
            made.append(provider)
            return Reconciler(store, {"lab": ProviderHandle(provider, 4)}, runtime)
        return make

    yield with_settings
    for provider in made:
        provider.close()


def test_a_wrong_password_blocks_requests_until_it_is_fixed(
    reconciler_with: Callable[..., Callable[[Store], Reconciler]], clock: FakeClock,
    tmp_path: Path,
) -> None:
    fails_then_heals(tmp_path, clock, machine_request,
                     broken=reconciler_with(password="not-the-password-123"),
                     fixed=reconciler_with(), says="InvalidLogin",
                     secret="not-the-password-123")


def test_a_wrong_thumbprint_blocks_requests_until_it_is_fixed(
    reconciler_with: Callable[..., Callable[[Store], Reconciler]], clock: FakeClock,
    tmp_path: Path, vcsim: VcsimServer,
) -> None:
    fails_then_heals(tmp_path, clock, machine_request,
                     broken=reconciler_with(thumbprint=":".join(["AB"] * 32)),
                     fixed=reconciler_with(), says="does not match the pinned thumbprint",
                     secret=vcsim.password)
