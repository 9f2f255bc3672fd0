"""A request whose provider instance was removed from the config says so (issue 15).

Before the fix, deleting such a request left it deprovisioning for ever with no
error and no event: the worker said "provider 'lab' is not configured here" once
in its own log and nothing reached the request, `machine list` or the API.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from talprov.providers.protocol import Runtime
from talprov.providers.types import MachineRequest, Stage
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.registry import build_provider
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.helpers import WORKER_CONFIG


def _reconciler(store: Store, tmp_path: Path, instances: list[str]) -> Reconciler:
    clock = FakeClock()
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    raw = {"type": "file", "path": str(tmp_path / "cloud.sqlite")}
    handles = {name: ProviderHandle(build_provider(name, raw, runtime,
                                                   where=f"providers.{name}"), 4)
               for name in instances}
    return Reconciler(store, handles, runtime)


def test_deleting_a_request_of_a_removed_instance_carries_an_error_naming_it(
    tmp_path: Path, plugin_dir: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    store.create_request(MachineRequest(id="web-0", provider="lab", talos_version="v1.11.5",
                                        machine_config=SecretStr(WORKER_CONFIG)))
    with_lab = _reconciler(store, tmp_path, ["lab"])
    assert with_lab.run_until(lambda: _stage(store) == Stage.PROVISIONED, timeout=600)

    # `lab` is removed from the config; the worker restarts; the request is deleted.
    without_lab = _reconciler(store, tmp_path, ["other"])
    store.request_deletion("web-0")
    for _ in range(3):
        without_lab.run_pass()

    record = store.get_request("web-0")
    assert record is not None
    assert record.stage == Stage.DEPROVISIONING  # nothing can delete its machine here
    assert record.error is not None
    assert "'lab'" in record.error
    assert "not configured" in record.error
    events = [e.message for e in store.events("web-0")]
    assert events.count(record.error) == 1  # once, not every pass

    # Put back in the config: the deletion finishes and the error goes.
    assert with_lab.run_until(lambda: _stage(store) == Stage.GONE, timeout=600)
    gone = store.get_request("web-0")
    assert gone is not None
    assert gone.error is None


def _stage(store: Store) -> Stage | None:
    record = store.get_request("web-0")
    return None if record is None else record.stage
