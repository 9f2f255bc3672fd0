"""A change of a cluster's record made while a scaler pass runs is not lost.

The pass reads the record, lists machines, and writes the record back; before
``talprov scale``/``apply``/``destroy`` took the cluster's lease, a size set
during the listing was overwritten by the pass's older copy.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from talprov.providers.protocol import Provider, Runtime
from talprov.providers.types import Machine, Owner
from talprov.reconcile.reconciler import ProviderHandle
from talprov.registry import build_provider
from talprov.scaler.apply import Scaler
from talprov.scaler.editing import ClusterBusy
from talprov.scaler.spec import load_spec_file
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.helpers import Home
from tests.unit.test_cluster_apply import write_spec


class SlowListing:
    """The provider, but its listing waits until ``release`` is set."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.listing = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def list_machines(self, owner: Owner) -> list[Machine]:
        self.listing.set()
        assert self.release.wait(30)
        return self.inner.list_machines(owner)


def _slow_scaler(home: Home) -> tuple[Scaler, SlowListing]:
    runtime = Runtime(installation="test", cache_dir=home.root / "cache")
    raw = {"type": "file", "path": home.cloud_path()}
    slow = SlowListing(build_provider("fake", raw, runtime, where="providers.fake"))
    store = Store(home.store_url)
    handles = {"fake": ProviderHandle(slow, 4)}  # type: ignore[arg-type]
    return Scaler(store, handles, runtime, worker_id="pass-worker"), slow


def _recorded_size(home: Home, set_name: str) -> int:
    store = Store(home.store_url)
    try:
        body = store.get_cluster("demo")
        assert body is not None
        return int(body["spec"]["sets"][set_name]["size"])
    finally:
        store.close()


def test_scale_during_a_pass_is_not_overwritten_by_it(home: Home) -> None:
    spec = write_spec(home.root, workers=2, control_planes=1)
    assert home.invoke("apply", "-f", str(spec)).exit_code == 0
    scaler, slow = _slow_scaler(home)
    passing = threading.Thread(target=scaler.run_pass, args=("demo",))
    passing.start()
    assert slow.listing.wait(30)
    # Let the pass finish a moment after `scale` has started waiting for the lease.
    threading.Timer(0.5, slow.release.set).start()
    result = home.invoke("scale", "demo", "workers", "4")
    passing.join(30)
    assert result.exit_code == 0, result.output
    assert _recorded_size(home, "workers") == 4


def test_a_change_gives_up_when_the_lease_stays_taken(tmp_path: Path) -> None:
    clock = FakeClock()
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    scaler = Scaler(store, {}, runtime, worker_id="editor")
    scaler.record(load_spec_file(write_spec(tmp_path)))
    assert store.claim_cluster("demo", owner="someone-else", ttl=3600, now=scaler.now())
    with pytest.raises(ClusterBusy, match="cluster demo is busy"), scaler.editing("demo",
                                                                                  wait=5):
        pass
    store.release_cluster("demo", owner="someone-else")
    with scaler.editing("demo", wait=5):
        assert store.cluster_lease_holders()[0][1].startswith("editor/edit/")
    assert store.cluster_lease_holders() == []
