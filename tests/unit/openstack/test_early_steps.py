"""The steps before ensure-server run while the pass's server listing is on its way,
and ensure-ports uses the port listing taken beside the lookups instead of its own."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from talprov.openstack import servers
from talprov.openstack.data import OpenStackData
from talprov.openstack.state import OpenStackState
from talprov.providers.protocol import StepContext
from talprov.providers.types import JoinSpec, MachineRequest, Stage
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from talprov.talos.join import RenderingPass
from tests.unit.openstack.harness import Harness

PORT_LIST = r"/v2\.0/ports$"


def _resolve_images(harness: Harness,
                    ctxs: Sequence[StepContext[OpenStackData, OpenStackState]]) -> None:
    step = next(s for s in harness.provider.steps() if s.name == "resolve-image")
    assert step.run_batch is not None
    assert list(step.run_batch(ctxs)) == [None] * len(ctxs)


def test_ensure_ports_uses_the_listing_taken_beside_the_lookups(harness: Harness) -> None:
    ctxs = [harness.context(harness.request(rid)) for rid in ("a", "b", "c")]
    harness.cloud.calls.clear()
    _resolve_images(harness, ctxs)
    assert harness.cloud.count_calls("GET", PORT_LIST) == 1
    assert harness.provider.ports.ensure_batch(ctxs) == [None, None, None]
    assert harness.cloud.count_calls("GET", PORT_LIST) == 1  # none of its own
    assert harness.cloud.count_calls("POST", PORT_LIST) == 1
    # The look-ahead is used once: ensure-ports again lists afresh.
    assert harness.provider.ports.ensure_batch(ctxs) == [None, None, None]
    assert harness.cloud.count_calls("GET", PORT_LIST) == 2
    assert len(harness.cloud.ports()) == 3


def test_ports_a_dead_worker_made_are_found_by_the_look_ahead(harness: Harness) -> None:
    # A worker made the ports, then died before its state was stored.
    dead = [harness.context(harness.request(rid)) for rid in ("a", "b")]
    assert harness.provider.ports.ensure_batch(dead) == [None, None]
    made = {p.id for p in harness.cloud.ports()}
    # The next worker starts from the stored (empty) state.
    ctxs = [harness.context(harness.request(rid)) for rid in ("a", "b")]
    harness.cloud.calls.clear()
    _resolve_images(harness, ctxs)
    assert harness.provider.ports.ensure_batch(ctxs) == [None, None]
    assert harness.cloud.count_calls("POST", PORT_LIST) == 0
    assert {pid for ctx in ctxs for pid in ctx.state.port_ids} == made
    assert not ctxs[0].state.model_dump().get("_seen_ports")  # never stored


def test_ports_are_made_while_the_server_listing_fails(harness: Harness,
                                                       tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    try:
        for rid in ("a", "b"):
            store.create_request(harness.request(rid))
        # Every attempt of the pass's server listing fails.
        harness.cloud.fail_next("GET", r"/servers/detail$", 503, count=20)
        with Reconciler(store, {"os-test": ProviderHandle(harness.provider, 8)},
                        harness.runtime) as reconciler:
            reconciler.run_pass(only=["a", "b"])
        # The steps that need no listing went as far as ensure-ports ...
        assert harness.cloud.count_calls("POST", PORT_LIST) == 1
        assert len(harness.cloud.ports()) == 2
        # ... and no server was made without a listing to look for one first.
        assert harness.cloud.count_calls("POST", r"/servers$") == 0
        assert {r.stage for r in store.list_requests()} == {Stage.PROVISIONING}
    finally:
        store.close()


def test_user_data_is_rendered_beside_the_lookups_and_never_stored(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    ctxs = [harness.context(harness.request(rid)) for rid in ("a", "b")]
    expected = sorted(servers.user_data_of(ctx.request) for ctx in ctxs)
    kept = servers.user_data_of(ctxs[0].request)
    rendered: list[str] = []
    real = servers.render_user_data

    def counting(request: MachineRequest, rendering: RenderingPass | None = None) -> str:
        rendered.append(request.id)
        return real(request, rendering)

    monkeypatch.setattr(servers, "render_user_data", counting)
    _resolve_images(harness, ctxs)
    assert sorted(rendered) == ["a", "b"]
    # Kept on the state, never stored nor shown: it holds the config's secrets.
    assert kept not in json.dumps(ctxs[0].state.model_dump())
    assert kept not in repr(ctxs[0].state)
    sent: list[str] = []
    harness.cloud.after("POST", r"/servers$", lambda req, _: sent.append(
        req.json()["server"]["user_data"]))
    for ctx in ctxs:
        for name in ("resolve-flavor", "ensure-ports", "ensure-server"):
            harness.run_step(name, ctx)
    assert sorted(rendered) == ["a", "b"]  # not rendered again for the creates
    assert sorted(sent) == expected


def test_a_pass_reads_its_sets_shared_config_once(harness: Harness,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: every request's rendering parsed the config again (twice with a join).
    config = "version: v1alpha1\nmachine:\n  type: worker\n  token: pass-canary-3f1\n"
    ctxs = [harness.context(harness.request(rid).model_copy(update={
        "machine_config": SecretStr(config), "talos_version": "v1.11.5",
        "join": JoinSpec(api_url=SecretStr("grpc://127.0.0.1:1?jointoken=t"))}))
        for rid in ("a", "b", "c", "d")]
    parses = 0
    real = yaml.load_all

    def load_all(stream: Any, Loader: Any) -> Any:
        nonlocal parses
        parses += "pass-canary-3f1" in str(stream)
        return real(stream, Loader=Loader)

    monkeypatch.setattr(yaml, "load_all", load_all)
    _resolve_images(harness, ctxs)
    assert parses == 1
    kept = [ctx.state.take_user_data() for ctx in ctxs]
    monkeypatch.setattr(yaml, "load_all", real)
    assert kept == [servers.user_data_of(ctx.request) for ctx in ctxs]
