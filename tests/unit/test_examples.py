"""The files in examples/ stay valid: users copy them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from talprov.config import load_config
from talprov.registry import COMMON_INSTANCE_KEYS, load_type
from talprov.requestfile import load_request_file
from talprov.scaler.spec import load_spec_file
from tests.helpers import REPO, WORKER_CONFIG
from tests.unit.autoscaler.certs import Authority

EXAMPLES = REPO / "examples"


#: The example's CA file: a path on the user's host, which the config check reads.
EXAMPLE_CA_FILE = "/etc/ssl/certs/lab-ca.pem"


def test_example_config_validates_for_every_provider_type(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PVE_TOKEN_SECRET", "example-token-secret")
    monkeypatch.setenv("VCENTER_PASSWORD", "example-password")
    text = (EXAMPLES / "talprov.yaml").read_text()
    assert EXAMPLE_CA_FILE in text
    ca_file = tmp_path / "lab-ca.pem"
    ca_file.write_bytes(Authority("lab-ca").pem.cert)
    config = tmp_path / "talprov.yaml"
    config.write_text(text.replace(EXAMPLE_CA_FILE, str(ca_file)))
    loaded = load_config(str(config))
    types = set()
    for name, block in loaded.config.providers.items():
        raw = {k: v for k, v in block.model_dump().items() if k not in COMMON_INSTANCE_KEYS}
        load_type(block.type, where=name).config_model.model_validate(raw)
        types.add(block.type)
    assert types == {"aws", "proxmox", "vmware", "openstack"}


def test_example_spec_and_request_load(tmp_path: Path) -> None:
    for name in ("cluster.yaml", "request.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    (tmp_path / "worker.yaml").write_text(WORKER_CONFIG)
    (tmp_path / "controlplane.yaml").write_text(
        WORKER_CONFIG.replace("type: worker", "type: controlplane"))
    spec = load_spec_file(tmp_path / "cluster.yaml")
    assert list(spec.sets) == ["control-planes", "workers"]
    request = load_request_file(tmp_path / "request.yaml")
    assert request.id == "example-1"
