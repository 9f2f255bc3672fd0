"""Leases (claim, expiry, renewal, release) and stored cluster specs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from talprov.store import Store, StoreError
from tests.unit.store.factories import make_request

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_a_lease_is_exclusive_until_it_expires(store: Store) -> None:
    store.create_request(make_request())

    assert store.claim("web-1", owner="replica-a", ttl=30, now=T0)
    assert not store.claim("web-1", owner="replica-b", ttl=30, now=T0 + timedelta(seconds=29))
    # Expired: anyone may take it over.
    assert store.claim("web-1", owner="replica-b", ttl=30, now=T0 + timedelta(seconds=31))
    assert not store.claim("web-1", owner="replica-a", ttl=30, now=T0 + timedelta(seconds=32))


def test_the_holder_renews_its_lease(store: Store) -> None:
    store.create_request(make_request())
    assert store.claim("web-1", owner="a", ttl=30, now=T0)
    assert store.claim("web-1", owner="a", ttl=30, now=T0 + timedelta(seconds=25))
    # Renewed at +25 s, so still held at +50 s.
    assert not store.claim("web-1", owner="b", ttl=30, now=T0 + timedelta(seconds=50))
    assert store.claim("web-1", owner="b", ttl=30, now=T0 + timedelta(seconds=56))


def test_release_frees_only_the_holders_lease(store: Store) -> None:
    store.create_request(make_request())
    assert store.claim("web-1", owner="a", ttl=300, now=T0)

    store.release("web-1", owner="b")  # not b's: no effect, no error
    assert not store.claim("web-1", owner="b", ttl=300, now=T0)

    store.release("web-1", owner="a")
    store.release("web-1", owner="a")  # idempotent
    assert store.claim("web-1", owner="b", ttl=300, now=T0)


def test_leases_do_not_disturb_progress_versions(store: Store) -> None:
    record = store.create_request(make_request())
    assert store.claim("web-1", owner="a", ttl=300)
    after = store.get_request("web-1")
    assert after is not None
    assert after.version == record.version


def test_claim_of_an_unknown_request_fails_and_bad_ttl_is_refused(store: Store) -> None:
    assert not store.claim("missing", owner="a", ttl=30)
    store.release("missing", owner="a")
    with pytest.raises(ValueError, match="positive"):
        store.claim("missing", owner="a", ttl=0)


def test_cluster_specs_are_stored_replaced_listed_and_deleted(store: Store) -> None:
    spec = {"name": "prod", "workers": [{"class": "small", "count": 3}], "tags": {"a": "b"}}
    assert store.get_cluster("prod") is None

    store.put_cluster("prod", spec)
    store.put_cluster("dev", {"name": "dev"})
    assert store.get_cluster("prod") == spec
    assert store.list_clusters() == ["dev", "prod"]

    changed = {**spec, "workers": [{"class": "small", "count": 5}]}
    store.put_cluster("prod", changed)
    assert store.get_cluster("prod") == changed

    store.delete_cluster("prod")
    store.delete_cluster("prod")  # idempotent
    assert store.get_cluster("prod") is None
    assert store.list_clusters() == ["dev"]


def test_a_cluster_spec_must_be_json(store: Store) -> None:
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        store.put_cluster("bad", {"when": object()})
    assert store.list_clusters() == []


def test_cluster_leases_are_exclusive_renewable_and_expire(store: Store) -> None:
    store.put_cluster("c1", {"name": "c1"})
    assert store.claim_cluster("c1", owner="a", ttl=30, now=T0)
    assert not store.claim_cluster("c1", owner="b", ttl=30, now=T0 + timedelta(seconds=10))
    assert store.claim_cluster("c1", owner="a", ttl=30, now=T0 + timedelta(seconds=20))
    # a's renewal runs to T0+50s: b still loses at +40s and wins after it expired.
    assert not store.claim_cluster("c1", owner="b", ttl=30, now=T0 + timedelta(seconds=40))
    assert store.claim_cluster("c1", owner="b", ttl=30, now=T0 + timedelta(seconds=51))
    store.release_cluster("c1", owner="a")  # not a's any more: nothing happens
    assert not store.claim_cluster("c1", owner="a", ttl=30, now=T0 + timedelta(seconds=52))
    store.release_cluster("c1", owner="b")
    assert store.claim_cluster("c1", owner="a", ttl=30, now=T0 + timedelta(seconds=53))
    store.put_cluster("c1", {"name": "c1", "changed": True})  # a spec update keeps the lease
    assert not store.claim_cluster("c1", owner="b", ttl=30, now=T0 + timedelta(seconds=54))
    assert not store.claim_cluster("nope", owner="a", ttl=30)
