"""User mistakes in cluster specs: one line naming file, document and field; exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import WORKER_CONFIG, Home
from tests.providers.fileprov import Cloud
from tests.unit.test_cluster_apply import write_spec


def _spec(root: Path, machine_class: dict[str, Any]) -> Path:
    (root / "worker.yaml").write_text(WORKER_CONFIG)
    (root / "controlplane.yaml").write_text(
        WORKER_CONFIG.replace("type: worker", "type: controlplane"))
    docs = [
        {"kind": "Cluster", "name": "demo", "talos": {"version": "v1.13.9"}},
        {"kind": "MachineClass", "name": "small", "provider": "fake", **machine_class},
        {"kind": "ControlPlane", "machineClass": {"name": "small", "size": 1},
         "config": {"file": "controlplane.yaml"}},
        {"kind": "Workers", "name": "workers", "machineClass": {"name": "small", "size": 1},
         "config": {"file": "worker.yaml"}},
    ]
    path = root / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_misspelt_provider_data_field_is_rejected_before_anything_is_recorded(
    home: Home,
) -> None:
    spec = _spec(home.root, {"provider_data": {"sise": "small"}})
    for command in ("plan", "apply"):
        result = home.invoke(command, "-f", str(spec))
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert "cluster.yaml" in result.output
        assert "MachineClass" in result.output
        assert "provider_data.sise" in result.output
    assert "is not recorded" in home.invoke("status", "demo").output  # apply recorded nothing
    assert Cloud(home.cloud_path()).machines() == []


def test_bad_failure_domain_provider_data_names_the_domain(home: Home) -> None:
    spec = _spec(home.root, {"provider_data": {"size": "small"},
                             "failureDomains": [{"name": "a", "provider_data": {"zone": "a"}},
                                                {"name": "b", "provider_data": {"size": "huge"}}]})
    result = home.invoke("plan", "-f", str(spec))
    assert result.exit_code == 2, result.output
    assert "failureDomains[1].provider_data.size" in result.output


def test_unknown_provider_instance_names_the_spec_file(home: Home) -> None:
    spec = _spec(home.root, {"provider_data": {"size": "small"}})
    spec.write_text(spec.read_text().replace("provider: fake", "provider: nope"))
    result = home.invoke("plan", "-f", str(spec))
    assert result.exit_code == 2, result.output
    assert "cluster.yaml" in result.output
    assert "unknown provider 'nope'" in result.output


def test_valid_provider_data_still_plans(home: Home) -> None:
    spec = _spec(home.root, {"provider_data": {"size": "small"},
                             "failureDomains": [{"name": "a", "provider_data": {"zone": "a"}}]})
    result = home.invoke("plan", "-f", str(spec))
    assert result.exit_code == 0, result.output
    assert "2 to create" in result.output


def test_the_plan_table_names_each_actions_failure_domain(home: Home) -> None:
    """QA: `plan` as a table hid the failure domain that `-o json` shows."""
    spec = _spec(home.root, {"provider_data": {"size": "small"},
                             "failureDomains": [{"name": "zone-a", "provider_data": {}},
                                                {"name": "zone-b", "provider_data": {}}]})
    preview = json.loads(home.invoke("plan", "-f", str(spec), "-o", "json").output)
    domains = {a["request"]: a["domain"] for a in preview["actions"]}
    assert len(domains) == 2
    assert set(domains.values()) <= {"zone-a", "zone-b"}
    lines = home.invoke("plan", "-f", str(spec)).output.splitlines()
    for request, domain in domains.items():
        [line] = [line for line in lines if request in line]
        assert f" in {domain}" in line


def test_a_cluster_recorded_with_another_store_key_is_named(
    home: Home, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # QA: plan/apply said only "store: cannot decrypt stored data…", not which record.
    key = "0uP4xJm3V8cQyT2nW9rZ5bK7dH1fL6sA_gE-oRtYiUw"
    spec = _spec(home.root, {"provider_data": {"size": "small"}})
    monkeypatch.setenv("TALPROV_STORE_KEY", key)
    assert home.invoke("apply", "-f", str(spec)).exit_code == 0
    monkeypatch.setenv("TALPROV_STORE_KEY", key[::-1])
    for command in ("plan", "apply"):
        result = home.invoke(command, "-f", str(spec))
        assert result.exit_code == 1, result.output
        assert "cluster demo" in result.output
        assert "TALPROV_STORE_KEY differs" in result.output
        assert "Traceback" not in result.output
        assert key not in result.output
        assert key[::-1] not in result.output


@pytest.mark.parametrize(("machine_class", "expected"), [
    ({"provider_data": {"sise": "small"}},
     'cluster.yaml: document 2 (MachineClass "small"): provider_data.sise: unknown field'),
    ({"provider_data": {"size": "small"},
      "failureDomains": [{"name": "a"}, {"name": "b", "provider_data": {"size": "huge"}}]},
     'cluster.yaml: document 2 (MachineClass "small"): failureDomains[1].provider_data.size: '),
    ({"provider": "nope", "provider_data": {"size": "small"}},
     'cluster.yaml: document 2 (MachineClass "small"): provider: unknown provider \'nope\''),
])
def test_provider_checks_name_the_document_as_every_spec_error_does(
        home: Home, machine_class: dict[str, Any], expected: str) -> None:
    """QA: errors found by the provider checks read "cluster.yaml: MachineClass
    'small': provider_data: ..." and "failureDomains['b']", while every other spec
    error reads "cluster.yaml: document 2 (MachineClass "small"): field: ..."."""
    spec = _spec(home.root, machine_class)
    result = home.invoke("plan", "-f", str(spec))
    assert result.exit_code == 2, result.output
    assert f"talprov: error: {spec.parent}/{expected}" in result.output, result.output


def test_a_set_without_config_is_refused_before_anything_is_recorded(home: Home) -> None:
    # QA: plan showed a create and apply made a machine with no config (and no join).
    spec = _spec(home.root, {"provider_data": {"size": "small"}})
    docs = list(yaml.safe_load_all(spec.read_text()))
    del docs[3]["config"]
    spec.write_text(yaml.safe_dump_all(docs))
    for command in ("plan", "apply"):
        result = home.invoke(command, "-f", str(spec))
        assert result.exit_code == 2, result.output
        assert 'document 4 (Workers "workers"): config: is required' in result.output
    assert json.loads(home.invoke("machine", "list", "-o", "json").output) == []


def test_a_spec_without_document_labels_is_refused_even_under_python_o(
        tmp_path: Path) -> None:
    # Review: `_document` checked this with `assert`, which `python -O` removes.
    spec_path = write_spec(tmp_path, workers=1, control_planes=1)
    script = (
        "import sys\n"
        "from talprov.cli.cluster import _document\n"
        "from talprov.scaler.clusterstate import seal_spec, unseal_spec\n"
        "from talprov.scaler.spec import load_spec_file\n"
        "from talprov.store.store import Store\n"
        "store = Store('sqlite://')\n"
        f"spec = load_spec_file(__import__('pathlib').Path({str(spec_path)!r}))\n"
        "stored = unseal_spec(seal_spec(spec, store), store)\n"
        "print(_document(spec, 'set', 'workers'))\n"
        "try:\n"
        "    _document(stored, 'set', 'workers')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        "set 'workers': the spec was not read from a file, so its documents are unknown"]
    assert "workers" in done.stdout.splitlines()[0]
