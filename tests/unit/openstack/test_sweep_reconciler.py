"""The request reconciler sweeping the OpenStack driver's leftovers, end to end:
a real SQLite store, the real provider, the fake cloud over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from talprov.providers.types import MachineRequest, Stage
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from tests.unit.openstack.harness import TALOS_VERSION, Harness
from tests.unit.openstack.test_sweep import port_ids, strand_ports


def test_a_pass_sweeps_the_ports_of_forgotten_requests_and_keeps_held_ones(
        harness: Harness, tmp_path: Path) -> None:
    held = strand_ports(harness, "held")
    strand_ports(harness, "forgotten")
    assert len(harness.cloud.ports()) == 2
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    try:
        record = store.create_request(MachineRequest(id="held", provider="os-test",
                                                     talos_version=TALOS_VERSION))
        # Mid-provisioning and not due for days: the pass runs none of its steps.
        later = datetime.fromtimestamp(harness.clock.now, UTC) + timedelta(days=3)
        store.save_progress(
            "held", expected_version=record.version, stage=Stage.PROVISIONING,
            step_index=4, step_name="ensure-server", state={}, error=None, attempts=0,
            next_attempt_at=later, step_started_at=None, infra_id=None, machine_uuid=None,
            addresses=(), events=())
        with Reconciler(store, {"os-test": ProviderHandle(harness.provider)},
                        harness.runtime, sweep_interval=300) as reconciler:
            report = reconciler.run_pass()
            assert report.errors == []
            assert report.swept == 1
            assert port_ids(harness) == set(held.state.port_ids)
            # Within the interval the next pass does not list ports again.
            harness.cloud.calls.clear()
            reconciler.run_pass()
            assert harness.cloud.count_calls("GET", r"/v2.0/ports$") == 0
    finally:
        store.close()
