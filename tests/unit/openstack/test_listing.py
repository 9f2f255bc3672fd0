"""list_machines reads Nova's JSON (no SDK object per server), over every page."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from talprov.openstack.servers import (
    owner_tags,
    server_microversion,
    tag_query,
    to_machine,
)
from tests.unit.openstack.harness import Harness


def test_machines_from_json_equal_those_from_sdk_servers(harness: Harness) -> None:
    harness.provision(harness.request("a"))
    harness.provision(harness.request("b", floating_ip_pool="public"))
    listed = harness.provider.list_machines(harness.owner)
    client = harness.provider.client
    sdk_view = [to_machine(s) for s in client.list(
        "list servers", client.compute.servers, tags=tag_query(owner_tags(harness.owner)))]
    assert sorted(listed, key=lambda m: m.infra_id) == sorted(sdk_view, key=lambda m: m.infra_id)
    assert {m.request_id for m in listed} == {"a", "b"}
    assert all(m.addresses for m in listed)
    assert any(len(m.addresses) == 2 for m in listed)  # fixed, then floating


def test_every_page_is_read(harness: Harness) -> None:
    for name in ("p-1", "p-2", "p-3"):
        harness.provision(harness.request(name))
    client = harness.provider.client
    harness.cloud.calls.clear()
    items = client.list_json("list servers", "compute", "/servers/detail", "servers",
                             microversion=server_microversion,
                             tags=tag_query(owner_tags(harness.owner)), limit=1)
    assert sorted(i["metadata"]["talprov-request"] for i in items) == ["p-1", "p-2", "p-3"]
    assert harness.cloud.count_calls("GET", r"/servers/detail$") == 3  # one per page


def test_the_first_listing_finds_the_image_endpoint_alongside(harness: Harness) -> None:
    harness.cloud.calls.clear()
    harness.provider.list_machines(harness.owner)
    assert harness.cloud.count_calls("GET", r"^/image/?$") == 1  # Glance's version document
    harness.provider.list_machines(harness.owner)
    harness.provider.client.list("list images", harness.provider.client.image.images)
    assert harness.cloud.count_calls("GET", r"^/image/?$") == 1  # once per connection


def test_every_glance_page_is_read(harness: Harness) -> None:
    # Glance links its next page in "next", not in "images_links" as Nova does.
    for name in ("g-1", "g-2", "g-3"):
        harness.cloud.add_image(name)
    client = harness.provider.client
    harness.cloud.calls.clear()
    items = client.list_json("list images", "image", "/images", "images", limit=1)
    assert {"g-1", "g-2", "g-3"} <= {i["name"] for i in items}
    assert harness.cloud.count_calls("GET", r"/v2/images$") == len(items)  # one per page


def test_threads_touching_a_service_at_once_make_one_version_discovery(
        harness: Harness) -> None:
    # Glance's version document answers slowly, so the touches overlap.
    harness.cloud.after("GET", r"^/image/?$", lambda *_: time.sleep(0.2))
    client = harness.provider.client
    client.conn.authorize()
    harness.cloud.calls.clear()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: client.list_json("list images", "image", "/images", "images"),
                      range(4)))
    assert harness.cloud.count_calls("GET", r"^/image/?$") == 1
    assert harness.cloud.count_calls("GET", r"/v2/images$") == 4


def test_listings_after_the_first_start_no_thread_to_reach_services(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # A pool per listing cost a thread start (about 0.4 ms on a busy host) for a
    # reach that had nothing left to do.
    client = harness.provider.client
    started: list[str] = []
    real_init = threading.Thread.__init__

    def noting(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
        started.append(str(kwargs.get("name") or ""))
        real_init(self, *args, **kwargs)

    harness.provider.list_machines(harness.owner)
    assert client.reaching(("image", "network"), lambda: "not again") == "not again"
    monkeypatch.setattr(threading.Thread, "__init__", noting)
    harness.provider.list_machines(harness.owner)
    assert started == []


def test_hot_calls_keep_the_endpoint_and_look_it_up_again_after_a_failure(
        harness: Harness) -> None:
    # keystoneauth looked the endpoint up in the catalog for every call (a third
    # of a call's CPU); kept, it must not outlive a failure: an endpoint that
    # moved is looked up afresh by the retry.
    client = harness.provider.client
    harness.provision(harness.request("ep-1"))
    lookups: list[str] = []
    proxy = client.compute
    real = proxy.get_endpoint

    def counted(*args: Any, **kwargs: Any) -> Any:
        lookups.append("compute")
        return real(*args, **kwargs)

    proxy.get_endpoint = counted
    try:
        harness.provider.list_machines(harness.owner)
        harness.provider.list_machines(harness.owner)
        assert lookups == []  # kept since the provisioning's calls
        client._endpoints["compute"] = "http://127.0.0.1:9/compute/v2.1"  # moved away
        listed = harness.provider.list_machines(harness.owner)
        assert [m.request_id for m in listed] == ["ep-1"]
        assert lookups == ["compute"]  # once, by the retry after the refused call
    finally:
        del proxy.get_endpoint
