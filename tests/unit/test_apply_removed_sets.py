"""`apply` asks before a spec leaves out a worker set that has machines.

QA: renaming a Workers set in a spec (or leaving it out) deleted all its
machines in that pass, at once and without the set's update bounds, with no
question, while a smaller control plane is asked about. A left-out ControlPlane
keeps its machines (destroy removes those), so it is not asked about.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.helpers import Home
from tests.unit.test_cluster_apply import write_spec


def _renamed(spec: Path, old: str, new: str) -> Path:
    docs = list(yaml.safe_load_all(spec.read_text()))
    for doc in docs:
        if doc.get("kind") == "Workers" and doc["name"] == old:
            doc["name"] = new
    spec.write_text(yaml.safe_dump_all(docs))
    return spec


def _without(spec: Path, kind: str) -> Path:
    docs = [doc for doc in yaml.safe_load_all(spec.read_text()) if doc["kind"] != kind]
    spec.write_text(yaml.safe_dump_all(docs))
    return spec


def _request_ids(home: Home) -> list[str]:
    return sorted(r["id"] for r in json.loads(home.invoke("machine", "list", "-o",
                                                          "json").output))


def test_a_renamed_worker_set_is_asked_about_and_nothing_changes_unasked(home: Home) -> None:
    spec = write_spec(home.root, control_planes=1, workers=2)
    assert home.invoke("apply", "-f", str(spec), "--wait").exit_code == 0
    before = _request_ids(home)

    refused = home.invoke("apply", "-f", str(_renamed(spec, "workers", "pool")))

    assert refused.exit_code == 2, refused.output
    assert "remove the set workers (2 machines) of cluster demo" in refused.output
    assert "a renamed set is a new set" in refused.output
    assert "pass --yes" in refused.output
    assert _request_ids(home) == before
    status = json.loads(home.invoke("status", "demo", "-o", "json").output)
    assert {s["name"] for s in status["sets"]} == {"control-planes", "workers"}


def test_with_yes_the_left_out_set_is_removed_as_before(home: Home) -> None:
    spec = write_spec(home.root, control_planes=1, workers=2)
    assert home.invoke("apply", "-f", str(spec), "--wait").exit_code == 0

    applied = home.invoke("apply", "-f", str(_renamed(spec, "workers", "pool")), "--yes",
                          "-o", "json")

    assert applied.exit_code == 0, applied.output
    actions = json.loads(applied.output)["actions"]
    deletes = [a for a in actions if a["action"] == "delete"]
    assert len(deletes) == 2
    assert {a["reason"] for a in deletes} == {"set is no longer in the spec"}
    assert sum(a["action"] == "create" and a["set"] == "pool" for a in actions) == 2


def test_a_left_out_control_plane_or_an_empty_set_is_not_asked_about(home: Home) -> None:
    spec = write_spec(home.root, control_planes=1, workers=0)
    assert home.invoke("apply", "-f", str(spec), "--wait").exit_code == 0

    renamed_empty = home.invoke("apply", "-f", str(_renamed(spec, "workers", "pool")))
    assert renamed_empty.exit_code == 0, renamed_empty.output
    no_control_plane = home.invoke("apply", "-f", str(_without(spec, "ControlPlane")))

    assert no_control_plane.exit_code == 0, no_control_plane.output
    assert "its machines are kept" in no_control_plane.output
