"""The scaler backs off a set's creates for the failures that call for it, named by cause.

QA: a machine deleted outside talprov started the set's creation backoff,
labelled "backoff after capacity/quota errors", and so delayed its own
replacement under a wrong label; the note printed its time as ``+00:00``
although the README promises RFC 3339 with ``Z``.
"""

from __future__ import annotations

from pathlib import Path

from talprov.providers.types import Stage
from talprov.scaler.apply import Scaler
from talprov.scaler.spec import load_spec_file
from tests.unit.test_cluster_apply import converge, scaler_world, write_spec


def workers_notes(scaler: Scaler) -> tuple[str, ...]:
    state = scaler.state("demo")
    assert state is not None
    return {s.name: s for s in scaler.preview(state).sets}["workers"].notes


def test_a_machine_lost_outside_talprov_is_replaced_without_a_backoff(
    tmp_path: Path, plugin_dir: Path,
) -> None:
    scaler, reconciler, cloud, clock, store = scaler_world(tmp_path, plugin_dir)
    scaler.record(load_spec_file(write_spec(tmp_path, workers=1, control_planes=1)))
    converge(scaler, reconciler, clock)
    assert scaler.converged("demo")
    worker = next(r for r in store.list_requests()
                  if r.request.labels["talprov.set"] == "workers")
    with cloud.connect() as db:
        db.execute("DELETE FROM machines WHERE request_id = ?", (worker.request.id,))
    reconciler.run_pass()
    reconciler.run_pass()
    lost = store.get_request(worker.request.id)
    assert lost is not None
    assert lost.stage == Stage.FAILED

    scaler.run_pass("demo")
    state = scaler.state("demo")
    assert state is not None
    assert "workers" not in state.backoff
    assert not any("backoff" in note for note in workers_notes(scaler))
    # Replaced in this very pass: a new worker request exists beside the lost one.
    workers = [r for r in store.list_requests(include_gone=True)
               if r.request.labels["talprov.set"] == "workers"]
    assert len(workers) == 2


def test_capacity_errors_back_off_under_their_name_with_z_times(
    tmp_path: Path, plugin_dir: Path,
) -> None:
    scaler, reconciler, _cloud, clock, _store = scaler_world(tmp_path, plugin_dir,
                                                             fail_creates=True)
    scaler.record(load_spec_file(write_spec(tmp_path, workers=1, control_planes=1)))
    for _ in range(3):
        scaler.run_pass("demo")
        reconciler.run_pass()
        clock.sleep(1)
    scaler.run_pass("demo")
    notes = [n for n in workers_notes(scaler) if n.startswith("backoff after")]
    assert len(notes) == 1
    assert notes[0].startswith("backoff after out of capacity until ")
    assert notes[0].endswith("Z")
    assert "+00:00" not in notes[0]
