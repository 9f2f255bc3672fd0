"""The Proxmox steps before the VM exists run while the pass's listing is on its way."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from talprov.providers.protocol import Provider
from talprov.proxmox.provider import ProxmoxProvider
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from tests.driving import step_ran_while_listing
from tests.unit.proxmox.conftest import machine_request


def test_place_runs_while_the_listing_is_on_its_way(
    provider: ProxmoxProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    placed_while_listing = step_ran_while_listing(provider, "_place_batch", monkeypatch)
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    store.create_request(machine_request("r1"))

    handle = ProviderHandle(cast(Provider, provider), 4)
    Reconciler(store, {"lab": handle}, provider.runtime).run_pass()

    assert placed_while_listing == [True]
    record = store.get_request("r1")
    assert record is not None
    assert record.step_name not in (None, "place")  # it went on after place
