"""Calls per server when a set provisions through the real reconciler: at most two."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from talprov.openstack.lookups import NameCache, Resolved
from talprov.providers.errors import InvalidRequest
from talprov.providers.types import Stage
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.unit.openstack.harness import Harness

COUNT = 20


def test_a_set_of_twenty_costs_at_most_two_calls_per_server(
        harness: Harness, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    try:
        for i in range(COUNT):
            store.create_request(harness.request(f"w-{i:02d}"))
        harness.cloud.calls.clear()
        with Reconciler(store, {"os-test": ProviderHandle(harness.provider, 8)},
                        harness.runtime) as reconciler:
            done = reconciler.run_until(
                lambda: all(r.stage == Stage.PROVISIONED for r in store.list_requests()),
                timeout=600)
        assert done
    finally:
        store.close()
    cloud_calls = [(m, p) for m, p, _ in harness.cloud.calls if not p.startswith("/identity")]
    by_kind = Counter(f"{m} {p.split('/')[-1] if m == 'GET' else p}" for m, p in cloud_calls)
    assert len(cloud_calls) <= 2 * COUNT, by_kind
    # Per server only itself is created; its port comes from ONE bulk create of
    # the pass's ports; everything else is shared.
    assert harness.cloud.count_calls("POST", r"/v2\.0/ports$") == 1
    assert harness.cloud.count_calls("POST", r"/servers$") == COUNT
    # Names are resolved once, not per server, each with one call.
    assert harness.cloud.count_calls("GET", r"/flavors") == 1
    assert harness.cloud.count_calls("GET", r"/v2\.0/networks") <= 2
    # No GET of a server created in the same pass: the next listing shows it.
    assert harness.cloud.count_calls("GET", r"/servers/(?!detail)[^/]+$") == 0
    assert len(harness.cloud.servers()) == COUNT
    assert len(harness.cloud.ports()) == COUNT


def test_names_are_kept_for_the_ttl_and_dropped_on_a_not_found() -> None:
    clock = FakeClock()
    cache = NameCache(clock, ttl=60)
    asked: list[str] = []

    def resolve(answer: str) -> Resolved:
        asked.append(answer)
        return Resolved(answer, "net")

    assert cache.get("network", "private", lambda: resolve("n-1")).id == "n-1"
    assert cache.get("network", "private", lambda: resolve("n-2")).id == "n-1"
    clock.sleep(61)
    assert cache.get("network", "private", lambda: resolve("n-2")).id == "n-2"
    cache.forget("n-2")
    assert cache.get("network", "private", lambda: resolve("n-3")).id == "n-3"
    assert asked == ["n-1", "n-2", "n-3"]


def test_a_failed_resolution_is_not_cached() -> None:
    cache = NameCache(FakeClock(), ttl=60)

    def missing() -> Resolved:
        raise InvalidRequest("no network 'x'", field="provider_data.networks")

    for _ in range(2):
        try:
            cache.get("network", "x", missing)
        except InvalidRequest:
            pass
        else:
            raise AssertionError("expected InvalidRequest")
    assert cache.get("network", "x", lambda: Resolved("n-9", "x")).id == "n-9"
