"""Machine config loading, shape checks and patch semantics (Talos docs and RFC 7386)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from talprov.errors import ConfigError
from talprov.talos.configschema import check_config
from talprov.talos.machineconfig import (
    PatchStyle,
    apply_patches,
    load_documents,
    merge_patch,
)
from talprov.talos.versions import DEFAULT_TALOS_VERSION

CANARY = "CANARY-secret-ca-key-4f1d"

BASE = f"""version: v1alpha1
machine:
  type: worker
  token: {CANARY}
  network:
    hostname: worker1
    interfaces:
      - interface: eth0
        dhcp: false
        addresses: [192.168.10.3/24]
        vlans:
          - vlanId: 10
            mtu: 1500
  nodeLabels:
    node.kubernetes.io/exclude-from-external-load-balancers: ""
    keep: "yes"
cluster:
  network:
    dnsDomain: cluster.local
    podSubnets: [10.244.0.0/16]
    serviceSubnets: [10.96.0.0/12]
  apiServer:
    certSANs: [a.example]
    admissionControl:
      - name: PodSecurity
        configuration:
          defaults: {{enforce: baseline}}
          exemptions: {{namespaces: [kube-system]}}
---
apiVersion: v1alpha1
kind: SideroLinkConfig
apiUrl: https://omni.example:8090/
---
apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: foo
configFiles:
  - content: hello
    mountPath: /etc/foo
  - content: other
    mountPath: /etc/bar
"""


def patched(*patches: str, style: PatchStyle = PatchStyle.STRATEGIC) -> list[dict[str, Any]]:
    return load_documents(apply_patches(BASE, list(patches), "worker.yaml", style=style), "out")


def v1alpha1(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in documents if "kind" not in d)


def test_load_documents_reads_every_document_go_style() -> None:
    documents = load_documents(BASE, "worker.yaml")
    assert [d.get("kind") for d in documents] == [
        None,
        "SideroLinkConfig",
        "ExtensionServiceConfig",
    ]
    # Only true/false are booleans, as in Go's yaml.v3.
    assert documents[0]["machine"]["nodeLabels"]["keep"] == "yes"
    assert load_documents("a: yes\nb: 2024-01-02\n", "x")[0] == {"a": "yes", "b": "2024-01-02"}


def test_malformed_yaml_names_file_and_line_without_content() -> None:
    text = f"version: v1alpha1\nmachine:\n  token: {CANARY}\n  type: [worker\n"
    with pytest.raises(ConfigError) as caught:
        load_documents(text, "worker.yaml")
    assert caught.value.where.startswith("worker.yaml: line ")
    assert CANARY not in str(caught.value)


def test_libyamls_parser_reads_what_pyyamls_reads() -> None:
    from pathlib import Path

    from talprov.talos import machineconfig

    assert yaml.__with_libyaml__  # else the fast path is PyYAML's own, and this proves nothing
    texts = [BASE, "a: yes\nb: 2024-01-02\nc: 0o17\nd: 1_000\ne: .inf\nf: 12:30\ng: ~\n"]
    texts += [p.read_text() for p in sorted(Path(__file__).parent.glob("data/**/*.yaml"))]
    assert len(texts) > 30
    for text in texts:
        fast = list(yaml.load_all(text, Loader=machineconfig._FastLoader))
        assert fast == list(yaml.load_all(text, Loader=machineconfig._Loader))
    with pytest.raises(ConfigError, match="appears twice"):
        load_documents("a: 1\na: 2\n", "x")


def test_malformed_yaml_points_where_pyyamls_parser_points() -> None:
    # libyaml says line 2, column 1 here: past the unclosed flow sequence.
    with pytest.raises(ConfigError) as caught:
        load_documents("a: [b", "x")
    assert caught.value.where == "x: line 1, column 6"
    assert "but got '<stream end>'" in str(caught.value)  # PyYAML's words too


def test_non_mapping_document_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        load_documents("version: v1alpha1\n---\n- a\n", "c.yaml")
    assert caught.value.where == "c.yaml: document 2"


def test_the_test_config_is_one_talos_accepts() -> None:
    documents = load_documents(BASE, "worker.yaml")
    assert check_config(documents, "worker.yaml", "v1.11.6") == []
    # v1.13 still reads machine.network but left it out of its schema.
    warnings = check_config(documents, "worker.yaml", DEFAULT_TALOS_VERSION)
    assert [w.split(": ")[2] for w in warnings] == ["machine.network"]


# RFC 7386 appendix A examples.
@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386_examples(target: Any, patch: Any, result: Any) -> None:
    before = yaml.safe_dump(target)
    assert merge_patch(target, patch) == result
    assert yaml.safe_dump(target) == before  # inputs are left alone


def test_rfc7386_style_patches_the_v1alpha1_document() -> None:
    documents = patched(
        "machine:\n  network:\n    hostname: null\n    interfaces: [{interface: eth1}]\n",
        style=PatchStyle.MERGE,
    )
    network = v1alpha1(documents)["machine"]["network"]
    assert "hostname" not in network
    assert network["interfaces"] == [{"interface": "eth1"}]  # lists are replaced whole
    assert len(documents) == 3


def test_rfc7386_patch_must_be_one_mapping() -> None:
    with pytest.raises(ConfigError) as caught:
        apply_patches(BASE, ["a: 1\n---\nb: 2\n"], "w.yaml", style=PatchStyle.MERGE)
    assert caught.value.where == "w.yaml: patch 1"


def test_strategic_patch_merges_maps_and_keyed_lists() -> None:
    documents = patched(
        "machine:\n  network:\n    hostname: worker2\n    interfaces:\n"
        "      - interface: eth0\n        vip: {ip: 192.168.10.50}\n"
        "        vlans: [{vlanId: 10, mtu: 9000}, {vlanId: 20}]\n"
        "      - interface: eth1\n        dhcp: true\n"
        "cluster:\n  apiServer:\n    certSANs: [b.example]\n    admissionControl:\n"
        "      - name: PodSecurity\n"
        "        configuration: {exemptions: {namespaces: [rook-ceph]}}\n"
    )
    config = v1alpha1(documents)
    network = config["machine"]["network"]
    assert network["hostname"] == "worker2"
    eth0, eth1 = network["interfaces"]
    assert eth0["addresses"] == ["192.168.10.3/24"]
    assert eth0["vip"] == {"ip": "192.168.10.50"}
    assert eth0["vlans"] == [{"vlanId": 10, "mtu": 9000}, {"vlanId": 20}]
    assert eth1 == {"interface": "eth1", "dhcp": True}
    api = config["cluster"]["apiServer"]
    assert api["certSANs"] == ["a.example", "b.example"]  # plain lists are appended
    (admission,) = api["admissionControl"]
    assert admission["configuration"]["exemptions"]["namespaces"] == ["kube-system", "rook-ceph"]
    assert admission["configuration"]["defaults"] == {"enforce": "baseline"}


def test_strategic_patch_replaces_subnets() -> None:
    config = v1alpha1(patched("cluster:\n  network:\n    podSubnets: [192.168.0.0/16]\n"))
    assert config["cluster"]["network"]["podSubnets"] == ["192.168.0.0/16"]
    assert config["cluster"]["network"]["serviceSubnets"] == ["10.96.0.0/12"]


def test_patch_delete_removes_keys_items_and_documents() -> None:
    # Shapes from Talos's configpatcher testdata/patchdelete/strategic1.yaml.
    documents = patched(
        "apiVersion: v1alpha1\nkind: SideroLinkConfig\n$patch: delete\n---\n"
        "apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: foo\nconfigFiles:\n"
        "  - content: hello\n    $patch: delete\n  - content: new\n    mountPath: /etc/bar\n---\n"
        "version: v1alpha1\nmachine:\n  network:\n    hostname:\n      $patch: delete\n"
        "    interfaces:\n      - interface: eth0\n        $patch: delete\n"
        "      - interface: eth0\n        dummy: true\n"
        "  nodeLabels:\n"
        "    node.kubernetes.io/exclude-from-external-load-balancers:\n      $patch: delete\n"
    )
    assert [d.get("kind") for d in documents] == [None, "ExtensionServiceConfig"]
    machine = v1alpha1(documents)["machine"]
    assert "hostname" not in machine["network"]
    assert machine["network"]["interfaces"] == [{"interface": "eth0", "dummy": True}]
    assert machine["nodeLabels"] == {"keep": "yes"}
    assert documents[1]["configFiles"] == [{"content": "new", "mountPath": "/etc/bar"}]


def test_unknown_documents_are_appended_without_directives() -> None:
    documents = patched(
        "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: cp-1\nauto: off\n"
        "x:\n  $patch: delete\n"
    )
    assert documents[-1] == {
        "apiVersion": "v1alpha1",
        "kind": "HostnameConfig",
        "hostname": "cp-1",
        "auto": "off",
    }


def test_the_v1alpha1_document_cannot_be_deleted() -> None:
    with pytest.raises(ConfigError) as caught:
        apply_patches(BASE, ["machine: {}\n", "version: v1alpha1\n$patch: delete\n"], "w.yaml")
    assert caught.value.where == "w.yaml: patch 2"


def test_patches_apply_in_order_and_output_round_trips() -> None:
    text = apply_patches(
        BASE, ["machine: {network: {hostname: a}}", "machine: {network: {hostname: b}}"], "w"
    )
    assert v1alpha1(load_documents(text, "out"))["machine"]["network"]["hostname"] == "b"
    assert CANARY in text  # the config itself is kept intact
    check_config(load_documents(text, "out"), "out", DEFAULT_TALOS_VERSION)


def test_no_patches_returns_the_text_unchanged() -> None:
    assert apply_patches(BASE, [], "w.yaml") == BASE


def test_malformed_patch_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        apply_patches(BASE, ["machine: {}", "machine: [\n"], "w.yaml")
    assert caught.value.where.startswith("w.yaml: patch 2: line ")


def test_multiline_strings_survive_as_literal_blocks() -> None:
    text = apply_patches(
        "version: v1alpha1\nmachine:\n  type: worker\n"
        '  ca: {crt: "-----BEGIN-----\\nAAA\\n-----END-----\\n"}\n',
        ["machine: {network: {hostname: a}}"],
        "w",
    )
    assert "crt: |\n" in text
    assert (
        load_documents(text, "out")[0]["machine"]["ca"]["crt"]
        == "-----BEGIN-----\nAAA\n-----END-----\n"
    )


def test_patching_keeps_yaml_1_1_lookalikes_as_strings() -> None:
    text = (
        "version: v1alpha1\nmachine:\n  type: worker\n"
        "  env: {A: '1', B: yes, C: 12:30, D: 2024-01-02}\n"
    )
    out = apply_patches(text, ["machine: {env: {E: 0x10}}"], "w")
    env = load_documents(out, "out")[0]["machine"]["env"]
    assert env == {"A": "1", "B": "yes", "C": "12:30", "D": "2024-01-02", "E": 16}
    # Written so that a YAML 1.1 reader would also see strings.
    assert yaml.safe_load(out)["machine"]["env"]["B"] == "yes"
