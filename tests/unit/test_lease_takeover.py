"""One rule for taking over a lease a dead process of this host left (request
leases in the reconciler, cluster leases in the scaler): processes.take_over_if_dead."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from talprov.processes import take_over_if_dead
from talprov.providers.protocol import Runtime
from talprov.reconcile.reconciler import Reconciler
from talprov.store import Store
from tests.helpers import Home
from tests.unit.store.factories import make_request


class Calls:
    """Records the release and claim calls; claims answer ``claimed``."""

    def __init__(self, claimed: bool = True) -> None:
        self.said: list[str] = []
        self.claimed = claimed

    def release(self, owner: str) -> None:
        self.said.append(f"release {owner}")

    def claim(self) -> bool:
        self.said.append("claim")
        return self.claimed


def exited_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_local_holder_is_released_as_itself_then_claimed() -> None:
    calls = Calls()
    dead = f"{socket.gethostname()}:{exited_pid()}/edit/1"
    assert take_over_if_dead(dead, release=calls.release, claim=calls.claim)
    assert calls.said == [f"release {dead}", "claim"]


def test_a_lost_race_after_the_release_is_false() -> None:
    calls = Calls(claimed=False)
    dead = f"{socket.gethostname()}:{exited_pid()}"
    assert not take_over_if_dead(dead, release=calls.release, claim=calls.claim)
    assert calls.said == [f"release {dead}", "claim"]


def test_a_live_or_remote_holder_is_left_alone() -> None:
    calls = Calls()
    for holder in (f"{socket.gethostname()}:{os.getpid()}", "elsewhere.example:1"):
        assert not take_over_if_dead(holder, release=calls.release, claim=calls.claim)
    assert calls.said == []


def test_a_lease_freed_meanwhile_is_claimed_without_a_release() -> None:
    calls = Calls()
    assert take_over_if_dead(None, release=calls.release, claim=calls.claim)
    assert calls.said == ["claim"]


def _reconcilers(tmp_path: Path, *workers: str) -> list[Reconciler]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store(url) as store:
        store.migrate()
        if store.get_request("web-1") is None:
            store.create_request(make_request())
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache")
    return [Reconciler(Store(url), {}, runtime, worker_id=worker) for worker in workers]


def test_two_reconcilers_racing_for_a_dead_holders_lease_give_it_to_one(
        tmp_path: Path) -> None:
    dead = f"{socket.gethostname()}:{exited_pid()}/worker"
    first, second = _reconcilers(tmp_path, "worker-a", "worker-b")
    assert first.store.claim("web-1", owner=dead, ttl=300)
    start = threading.Barrier(2)
    won: dict[str, bool] = {}

    def take(reconciler: Reconciler) -> None:
        start.wait()
        won[reconciler.worker_id] = reconciler._take_over("web-1")

    threads = [threading.Thread(target=take, args=(r,)) for r in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won.values()) == [False, True]
    (winner,) = [worker for worker, took in won.items() if took]
    holder = first.store.lease_holder("web-1")
    assert holder is not None
    assert holder[0] == winner
    for reconciler in (first, second):
        reconciler.store.close()


def test_a_reconciler_claims_a_lease_freed_after_its_claim_was_refused(
        tmp_path: Path) -> None:
    # take_over_if_dead's rule: no holder any more means claim. The reconciler
    # answered False for it and left the request to the next pass.
    (mine,) = _reconcilers(tmp_path, "worker-a")
    assert mine.store.claim("web-1", owner="elsewhere.example:1/w", ttl=300)
    assert not mine._take_over("web-1")  # a live holder on another host
    mine.store.release("web-1", owner="elsewhere.example:1/w")
    assert mine._take_over("web-1")
    holder = mine.store.lease_holder("web-1")
    assert holder is not None
    assert holder[0] == "worker-a"
    mine.store.close()


def test_reconcile_once_says_it_took_over_a_lease_a_stopped_talprov_left(home: Home) -> None:
    # QA: after a stop left a request's lease (its call was still running), the next
    # `reconcile --once` took it over without a word, even with -v.
    home.write_config()
    request = home.write_request("left-1")
    home.run("machine", "create", "-f", str(request), check=True)
    store = Store(home.store_url)
    dead = f"{socket.gethostname()}:{exited_pid()}/cli"
    assert store.claim("left-1", owner=dead, ttl=300)
    store.close()
    result = home.run("reconcile", "--once", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert "took over 1 request whose lease a stopped talprov of this host held" in (
        result.stderr), result.stderr
    assert json.loads(result.stdout)["taken_over"] == 1
