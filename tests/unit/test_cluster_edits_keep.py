"""A change of a cluster's record made while a scaler pass runs is not lost.

The pass reads the record, lists machines, and writes the record back; before
``talprov scale``/``apply``/``destroy`` took the cluster's lease, a size set
during the listing was overwritten by the pass's older copy.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from datetime import timedelta
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
from talprov.timestamps import rfc3339
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


def _dead_pid() -> int:
    """The pid of a process of this host that has ended and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _editing_scaler(tmp_path: Path) -> tuple[Scaler, Store, FakeClock]:
    clock = FakeClock()
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    scaler = Scaler(store, {}, runtime, worker_id="editor")
    scaler.record(load_spec_file(write_spec(tmp_path)))
    return scaler, store, clock


def test_a_change_gives_up_when_the_lease_stays_taken(tmp_path: Path) -> None:
    scaler, store, _ = _editing_scaler(tmp_path)
    assert store.claim_cluster("demo", owner="someone-else", ttl=3600, now=scaler.now())
    with pytest.raises(ClusterBusy, match="cluster demo is busy"), scaler.editing("demo",
                                                                                  wait=5):
        pass
    store.release_cluster("demo", owner="someone-else")
    with scaler.editing("demo", wait=5):
        assert store.cluster_lease_holders()[0][1].startswith("editor/edit/")
    assert store.cluster_lease_holders() == []


@pytest.mark.parametrize("suffix", ["/edit/0123abcd-1", ""])  # a change's, a pass's
def test_a_lease_a_killed_process_of_this_host_left_is_taken_over_at_once(
        tmp_path: Path, suffix: str) -> None:
    scaler, store, clock = _editing_scaler(tmp_path)
    dead = f"{socket.gethostname()}:{_dead_pid()}{suffix}"
    assert store.claim_cluster("demo", owner=dead, ttl=300, now=scaler.now())
    started = clock()
    with scaler.editing("demo", wait=30):
        holder = store.cluster_lease_holder("demo")
        assert holder is not None
        assert holder[0].startswith("editor/edit/")
    assert clock() == started  # not a single poll: no waiting out the 5 minutes
    assert store.cluster_lease_holder("demo") is None


def test_a_pass_takes_over_a_dead_local_holder_and_says_once_who_else_holds_it(
        home: Home, caplog: pytest.LogCaptureFixture) -> None:
    spec = write_spec(home.root, workers=1, control_planes=1)
    assert home.invoke("apply", "-f", str(spec)).exit_code == 0
    scaler, slow = _slow_scaler(home)
    slow.release.set()
    store = scaler.store
    alive = f"{socket.gethostname()}:{os.getpid()}"  # this very process: alive
    assert store.claim_cluster("demo", owner=alive, ttl=300, now=scaler.now())
    with caplog.at_level(logging.INFO, logger="talprov.scaler.editing"):
        assert scaler.run_pass("demo") is None
        assert scaler.run_pass("demo") is None
    skips = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skips) == 1, skips
    assert f"a scaler pass by process {alive} holds its lease, until " in skips[0]

    store.release_cluster("demo", owner=alive)
    dead = f"{socket.gethostname()}:{_dead_pid()}"
    assert store.claim_cluster("demo", owner=dead, ttl=300, now=scaler.now())
    assert scaler.run_pass("demo") is not None
    assert store.cluster_lease_holder("demo") is None


@pytest.mark.parametrize("host", ["this", "elsewhere"])
def test_busy_names_the_live_or_remote_holder_and_when_its_lease_runs_out(
        tmp_path: Path, host: str) -> None:
    scaler, store, _ = _editing_scaler(tmp_path)
    # A remote holder's pid says nothing here: even a dead-looking one is waited for.
    pid = os.getpid() if host == "this" else _dead_pid()
    holder = f"{socket.gethostname() if host == 'this' else 'other-host'}:{pid}"
    assert store.claim_cluster("demo", owner=f"{holder}/edit/0123abcd-1", ttl=300,
                               now=scaler.now())
    until = rfc3339(scaler.now() + timedelta(seconds=300))
    with pytest.raises(ClusterBusy) as busy, scaler.editing("demo", wait=5):
        pass
    assert str(busy.value) == (f"cluster demo is busy: a change by process {holder} holds "
                               f"its lease, until {until}; waited 5 s, try again")
