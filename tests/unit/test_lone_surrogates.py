"""A lone UTF-16 surrogate ("\\ud800", as YAML and JSON can escape one) has no
UTF-8 form: no store, SDK or Talos can take it. Files refuse it where they are
read, naming the field (exit 2, one line), never deep in the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from talprov.config import load_config
from talprov.errors import ConfigError
from talprov.requestfile import load_request_file
from talprov.scaler.spec import load_spec

CANARY = "CANARY-7f3a91"
CONFIG = 'version: v1alpha1\nmachine: {type: worker}\n'


def _refused(call: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        call()  # type: ignore[operator]
    assert CANARY not in str(caught.value)
    assert "\ud800" not in str(caught.value)
    assert "\udc00" not in str(caught.value)
    assert "unpaired surrogate" in caught.value.message
    return caught.value


@pytest.mark.parametrize(("extra", "field"), [
    (f'provider_data: {{zone: "{CANARY}\\ud800"}}', "provider_data.zone"),
    (f'provider_data: {{tags: ["ok", "{CANARY}\\udc00"]}}', "provider_data.tags[1]"),
    (f'config: {{inline: "{CANARY}\\ud800"}}', "config.inline"),
    (f'join: {{api_url: "https://omni.example/?jointoken={CANARY}\\ud800"}}',
     "join.api_url"),
    ('labels: {"k\\ud800": v}', "labels"),
    ('extensions: ["siderolabs/x\\udfff"]', "extensions[0]"),
])
def test_a_request_file_names_the_field(tmp_path: Path, extra: str, field: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(f"provider: fake\ntalos_version: v1.13.9\n{extra}\n")
    error = _refused(lambda: load_request_file(path))
    assert error.where == f"{path}: {field}"


def test_a_machine_config_file_or_patch_names_document_and_field(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(CONFIG)
    (tmp_path / "bad.yaml").write_text(
        CONFIG + f'---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: "{CANARY}\\ud800"\n')
    (tmp_path / "patch.yaml").write_text(f'machine:\n  nodeLabels:\n    a: "{CANARY}\\ud800"\n')
    as_base = tmp_path / "r1.yaml"
    as_base.write_text("provider: fake\ntalos_version: v1.13.9\nconfig: {file: bad.yaml}\n")
    error = _refused(lambda: load_request_file(as_base))
    assert error.where == f"{tmp_path / 'bad.yaml'}: document 2: hostname"
    as_patch = tmp_path / "r2.yaml"
    as_patch.write_text("provider: fake\ntalos_version: v1.13.9\n"
                        "config: {file: base.yaml, patches: [patch.yaml]}\n")
    error = _refused(lambda: load_request_file(as_patch))
    assert error.where == f"{tmp_path / 'patch.yaml'}: document 1: machine.nodeLabels.a"


def test_the_config_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "talprov.yaml"
    path.write_text(f'providers:\n  dev:\n    type: fake\n    note: "{CANARY}\\ud800"\n')
    error = _refused(lambda: load_config(str(path)))
    assert error.where == f"{path}: providers.dev.note"


def test_a_cluster_spec_refuses_it_at_its_line(tmp_path: Path) -> None:
    """Specs are read with libyaml's loader, which refuses the escape itself."""
    text = ("kind: Cluster\nname: demo\ntalos: {version: v1.13.9}\n---\n"
            'kind: MachineClass\nname: small\nprovider: fake\n'
            f'provider_data: {{z: "{CANARY}\\ud800"}}\n')
    with pytest.raises(ConfigError) as caught:
        load_spec(text, "spec.yaml", tmp_path)
    assert caught.value.where == "spec.yaml: line 8, column 36"
    assert "invalid Unicode" in caught.value.message
    assert CANARY not in str(caught.value)


def test_a_bare_metal_block_file_names_the_field(tmp_path: Path) -> None:
    from talprov.cli.baremetal import load_block

    path = tmp_path / "block.yaml"
    path.write_text(f'type: baremetal\nnote: "{CANARY}\\ud800"\n')
    error = _refused(lambda: load_block(None, None, str(path)))
    assert error.where == f"{path}.note"
