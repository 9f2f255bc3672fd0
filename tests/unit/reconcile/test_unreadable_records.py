"""A request sealed with another TALPROV_STORE_KEY is set aside, not the whole pass.

QA found one such request made every pass fail ("reconcile pass failed ... cannot
decrypt"), so no other request advanced, and `machine get`/`delete` failed for it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from talprov.providers.types import Stage
from talprov.store.records import public_view
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.unit.reconcile.test_reconciler import make_reconciler, request, settle

KEY_A = "first-key-Yq3uJ0sQ8b2mN5vW7xZ1cR4tE6yU9iOp"
KEY_B = "other-key-Hd8kL2fG5jS1aQ9wE3rT7yU4iO6pZ0xC"


def stages(store: Store) -> dict[str, Stage]:
    return {s.id: s.stage for s in store.summaries(list(Stage))}


def test_a_record_sealed_with_another_key_is_isolated(
    tmp_path: Path, plugin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first = Store(url, key=KEY_A)
    first.migrate()
    reconciler_a, cloud = make_reconciler(first, clock, tmp_path, plugin_dir)
    first.create_request(request("lost-up"))
    settle(reconciler_a, first, lambda: stages(first) == {"lost-up": Stage.PROVISIONED})
    first.create_request(request("lost-new"))  # never worked on with key A
    first.close()

    store = Store(url, key=KEY_B)
    reconciler, _ = make_reconciler(store, clock, tmp_path, plugin_dir)
    for i in range(2):
        store.create_request(request(f"ok-{i}"))
    report = reconciler.run_pass()
    assert not [e for e in report.errors if "reconcile pass failed" in e]
    settle(reconciler, store, lambda: stages(store)["ok-1"] == Stage.PROVISIONED
           and stages(store)["ok-0"] == Stage.PROVISIONED)

    # The unreadable request is not provisioned (its config is unknown) and says why.
    record = store.get_request("lost-new")
    assert record is not None
    assert record.unreadable is not None
    assert record.request.machine_config.get_secret_value() == ""
    assert record.stage == Stage.PENDING
    assert "lost-new" not in {m["request_id"] for m in cloud.machines()}
    view = public_view(record)
    assert view["error"] is not None
    assert "TALPROV_STORE_KEY" in view["error"]
    assert "decrypt" in view["error"]
    assert view["config_sha256"] is None
    for text in (view["error"], str(record.unreadable), repr(record)):
        assert KEY_A not in text
        assert KEY_B not in text
    messages = [e.message for e in store.events("lost-new")]
    assert sum("decrypt" in m for m in messages) == 1  # said once, not every pass
    # QA: it was logged at INFO only, so plain `serve` said nothing while it waited.
    warned = [r for r in caplog.records if r.levelno == logging.WARNING
              and "lost-new" in r.getMessage() and "set aside" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]

    # Deleting needs no config: the machine goes away.
    store.request_deletion("lost-up")
    settle(reconciler, store, lambda: stages(store)["lost-up"] == Stage.GONE)
    assert "lost-up" not in {m["request_id"] for m in cloud.machines()}
    store.request_deletion("lost-new")
    settle(reconciler, store, lambda: stages(store)["lost-new"] == Stage.GONE)
    store.close()
