"""The ``autoscaling`` block of a Workers set: validation, and sizes that apply keeps."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from talprov.providers.protocol import Runtime
from talprov.scaler.apply import Scaler
from talprov.store.store import Store
from tests.unit.scaler.test_spec import (
    CLASS,
    CLUSTER,
    CONTROL_PLANE,
    WORKERS,
    error_of,
    load,
    stream,
)
from tests.unit.scaler.test_spec import base_dir as base_dir  # noqa: PLC0414 - fixture

AUTOSCALED = WORKERS + "autoscaling: {min: 1, max: 5, nodeLabels: {pool: a}}\n"


@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        ((CLUSTER, CLASS, WORKERS + "autoscaling: {min: 3, max: 2}\n"),
         'document 3 (Workers "workers"): autoscaling.min: must be <= max (2)'),
        ((CLUSTER, CLASS, WORKERS + "autoscaling: {min: 3, max: 8}\n"),
         'document 3 (Workers "workers"): machineClass.size: the initial size of an '
         "autoscaled set must be within autoscaling.min..max (3..8)"),
        ((CLUSTER, CLASS, WORKERS + "autoscaling: {min: 0, max: 0}\n"),
         'document 3 (Workers "workers"): autoscaling.max: must be >= 1'),
        ((CLUSTER, CLASS, WORKERS + "autoscaling: {max: 4}\n"),
         'document 3 (Workers "workers"): autoscaling.min: is required'),
        ((CLUSTER, CLASS, CONTROL_PLANE + "autoscaling: {min: 1, max: 3}\n"),
         'document 3 (ControlPlane "control-planes"): autoscaling: only Workers sets can be '
         "autoscaled"),
        ((CLUSTER, CLASS, WORKERS + "autoscaling: {min: 1, max: 3, nodeTaints: "
                                    "[{key: a, effect: Sometimes}]}\n"),
         'document 3 (Workers "workers"): autoscaling.nodeTaints[0].effect: must be one of'),
        ((CLUSTER, CLASS, WORKERS + "autoscaling: {min: 1, max: 3, options: "
                                    "{scaleDownUnneededTime: soon}}\n"),
         "autoscaling.options.scaleDownUnneededTime: must be a duration"),
    ],
)
def test_autoscaling_errors_name_document_and_field(
    base_dir: Path, docs: tuple[str, ...], expected: str
) -> None:
    message = error_of(stream(*docs), base_dir)
    assert expected in message, message


def test_apply_of_the_same_spec_keeps_the_autoscaled_size(base_dir: Path,
                                                          tmp_path: Path) -> None:
    store = Store("sqlite://")
    store.migrate()
    scaler = Scaler(store, {}, Runtime(installation="t", cache_dir=tmp_path / "cache"))
    spec = load(stream(CLUSTER, CLASS, AUTOSCALED), base_dir)
    scaler.record(spec)
    # The autoscaler sets 4; a later apply of the file (size 2) keeps 4.
    scaler.record(spec.scaled("workers", 4), keep_autoscaled_sizes=False)
    assert scaler.record(spec).spec.sets["workers"].size == 4
    # New bounds move the kept size into them.
    narrower = load(stream(CLUSTER, CLASS, AUTOSCALED.replace("max: 5", "max: 3")), base_dir)
    assert scaler.record(narrower).spec.sets["workers"].size == 3
    # A set that is no longer autoscaled takes the file's size again.
    plain = load(stream(CLUSTER, CLASS, WORKERS), base_dir)
    assert scaler.record(plain).spec.sets["workers"].size == 2
    # Status names the bounds.
    scaler.record(spec)
    notes = {s.name: s.notes for s in scaler.preview(scaler.state("demo")).sets}  # type: ignore[arg-type]
    assert "autoscaled (1..5)" in notes["workers"]


def test_the_documented_blocks_are_valid(base_dir: Path) -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "autoscaler.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    workers = next(b for b in blocks if b.startswith("kind: Workers"))
    spec = load(stream(CLUSTER, CLASS, workers), base_dir)
    bounds = spec.sets["workers"].autoscaling
    assert bounds is not None
    assert (bounds.min, bounds.max, bounds.node_labels) == (1, 20, {"pool": "general"})
    assert bounds.options.scale_down_unneeded_time == timedelta(minutes=5)

    from talprov.autoscaler.config import parse_autoscaler_config

    service = yaml.safe_load(next(b for b in blocks if b.startswith("service:")))
    config = parse_autoscaler_config(service["service"]["autoscaler"], where="service.autoscaler")
    assert config.proxmox_regions == {"pve-lab": "cluster-1"}
    assert config.host_port() == ("0.0.0.0", 8086)


def test_a_spec_recorded_before_the_set_size_cap_still_reads_back(base_dir: Path,
                                                                  tmp_path: Path) -> None:
    # A spec recorded when autoscaling.max had no upper bound must stay readable:
    # otherwise every pass, status and destroy of that cluster would fail on it.
    from talprov.scaler.clusterstate import seal_spec, unseal_spec
    from talprov.scaler.models import MAX_SET_SIZE

    store = Store("sqlite://")
    store.migrate()
    spec = load(stream(CLUSTER, CLASS, AUTOSCALED), base_dir)
    body = seal_spec(spec, store)
    body["sets"]["workers"]["autoscaling"]["max"] = MAX_SET_SIZE + 500
    read = unseal_spec(body, store)
    bounds = read.sets["workers"].autoscaling
    assert bounds is not None
    assert bounds.max == MAX_SET_SIZE + 500
    # A new file still gets the cap.
    too_big = AUTOSCALED.replace("max: 5", f"max: {MAX_SET_SIZE + 1}")
    assert "autoscaling.max" in error_of(stream(CLUSTER, CLASS, too_big), base_dir)
