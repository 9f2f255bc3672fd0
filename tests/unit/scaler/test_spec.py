"""Cluster spec parsing: the happy path and every error message form."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from talprov.errors import ConfigError
from talprov.scaler.models import CONTROL_PLANE_SET, ClusterSpec, Role, parse_duration
from talprov.scaler.spec import load_spec, load_spec_file
from talprov.scaler.templates import desired_request, template_hash

CANARY = "CANARY-secret-7f3a91"

CLUSTER = """\
kind: Cluster
name: demo
talos: {version: v1.13.9}
join: {api_url: "https://omni.example:8090/?jointoken=${env:OMNI_JOIN_TOKEN}"}
"""
CLASS = """\
kind: MachineClass
name: aws-small
provider: aws-dev
provider_data: {instance_type: t3.large, subnets: [subnet-a, subnet-b]}
extensions: [siderolabs/iscsi-tools]
kernel_args: []
failureDomains:
  - {name: eu-west-1a, provider_data: {subnets: [subnet-a]}}
  - eu-west-1b
"""
CONTROL_PLANE = """\
kind: ControlPlane
machineClass: {name: aws-small, size: 3}
config: {file: controlplane.yaml}
"""
WORKERS = """\
kind: Workers
name: workers
machineClass: {name: aws-small, size: 2}
config: {file: worker.yaml}
patches: [{inline: "machine: {install: {disk: /dev/sdb}}"}]
update: {maxSurge: 25%, maxUnavailable: 1}
deleteOrder: newest
provisionTimeout: 1h30m
remediation: {maxInFlight: 2, maxUnhealthy: 50%}
"""
ENV = {"OMNI_JOIN_TOKEN": CANARY}


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    (tmp_path / "controlplane.yaml").write_text(
        f"version: v1alpha1\nmachine:\n  type: controlplane\n  token: {CANARY}\n")
    (tmp_path / "worker.yaml").write_text("version: v1alpha1\nmachine:\n  type: worker\n")
    return tmp_path


def stream(*docs: str) -> str:
    return "---\n".join(docs)


def load(text: str, base_dir: Path) -> ClusterSpec:
    return load_spec(text, "cluster.yaml", base_dir, env=ENV)


def error_of(text: str, base_dir: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, base_dir)
    message = str(info.value)
    assert CANARY not in message
    return message


def test_the_issue_example_loads(base_dir: Path) -> None:
    spec = load_spec(stream(CLUSTER, CLASS, CONTROL_PLANE, WORKERS), "cluster.yaml", base_dir,
                     env=ENV)
    assert spec.name == "demo"
    assert spec.talos_version == "v1.13.9"
    assert list(spec.sets) == [CONTROL_PLANE_SET, "workers"]
    cp, workers = spec.sets[CONTROL_PLANE_SET], spec.sets["workers"]
    assert (cp.role, cp.size, workers.role, workers.size) == (Role.CONTROLPLANE, 3, Role.WORKER, 2)
    assert workers.update.max_surge == "25%"
    assert workers.update.max_unavailable == 1
    assert workers.delete_order == "newest"
    assert workers.provision_timeout == timedelta(hours=1, minutes=30)
    assert workers.remediation.max_in_flight == 2
    assert cp.provision_timeout == timedelta(minutes=15)
    assert cp.remediation.max_unhealthy == "40%"
    assert "disk: /dev/sdb" in workers.machine_config.get_secret_value()
    assert spec.join is not None
    assert spec.join.api_url.get_secret_value().endswith(f"jointoken={CANARY}")
    assert spec.domains("workers") == ("eu-west-1a", "eu-west-1b")
    # Secrets stay out of reprs.
    assert CANARY not in repr(spec)


def test_desired_request_labels_domain_overrides_and_valid_id(base_dir: Path) -> None:
    spec = load_spec(stream(CLUSTER, CLASS, CONTROL_PLANE, WORKERS), "c.yaml", base_dir, env=ENV)
    request = desired_request(spec, "workers", "demo-workers-ab3de", "eu-west-1a")
    assert request.labels == {"talprov.cluster": "demo", "talprov.set": "workers",
                              "talprov.role": "worker", "talprov.domain": "eu-west-1a"}
    assert request.provider_data == {"instance_type": "t3.large", "subnets": ["subnet-a"]}
    assert request.provider == "aws-dev"
    assert request.extensions == ("siderolabs/iscsi-tools",)
    other = desired_request(spec, "workers", "demo-workers-xyz12", "eu-west-1b")
    assert other.provider_data["subnets"] == ["subnet-a", "subnet-b"]
    with pytest.raises(ValueError, match="DNS label"):
        desired_request(spec, "workers", "Demo_Bad", "eu-west-1a")
    with pytest.raises(ValueError, match="no failure domain"):
        desired_request(spec, "workers", "demo-workers-ab3de", "mars")


@pytest.mark.parametrize(
    ("change", "old", "new"),
    [
        ("talos version", "v1.13.9", "v1.12.0"),
        ("schematic", "siderolabs/iscsi-tools", "siderolabs/util-linux-tools"),
        ("provider_data", "t3.large", "t3.xlarge"),
        ("join token", "${env:OMNI_JOIN_TOKEN}", "other-token"),
    ],
)
def test_template_hash_changes_with_what_machines_are_made_of(
    base_dir: Path, change: str, old: str, new: str
) -> None:
    text = stream(CLUSTER, CLASS, CONTROL_PLANE, WORKERS)
    before = load_spec(text, "c.yaml", base_dir, env=ENV)
    after = load_spec(text.replace(old, new), "c.yaml", base_dir, env=ENV)
    same = load_spec(text, "c.yaml", base_dir, env=ENV)
    assert template_hash(before, "workers", "eu-west-1a") == template_hash(
        same, "workers", "eu-west-1a")
    assert template_hash(before, "workers", "eu-west-1a") != template_hash(
        after, "workers", "eu-west-1a"), change


def test_config_file_change_makes_requests_outdated(base_dir: Path) -> None:
    text = stream(CLUSTER, CLASS, CONTROL_PLANE, WORKERS)
    before = load_spec(text, "c.yaml", base_dir, env=ENV)
    (base_dir / "worker.yaml").write_text(
        "version: v1alpha1\nmachine:\n  type: worker\n  kubelet: {image: k.test/kubelet:v1}\n")
    after = load_spec(text, "c.yaml", base_dir, env=ENV)
    assert template_hash(before, "workers", "eu-west-1b") != template_hash(
        after, "workers", "eu-west-1b")
    assert template_hash(before, CONTROL_PLANE_SET, "eu-west-1b") == template_hash(
        after, CONTROL_PLANE_SET, "eu-west-1b")


def test_load_spec_file_reads_relative_files(base_dir: Path) -> None:
    path = base_dir / "cluster.yaml"
    path.write_text(stream(CLUSTER, CLASS, CONTROL_PLANE, WORKERS))
    assert load_spec_file(path, env=ENV).sets["workers"].size == 2
    with pytest.raises(ConfigError, match="cannot read"):
        load_spec_file(base_dir / "missing.yaml")


@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS.replace("size: 2", "size: -1")),
         'cluster.yaml: document 4 (Workers "workers"): machineClass.size: must be >= 0'),
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS.replace("deleteOrder: newest", "deleteOrder: x")),
         'cluster.yaml: document 4 (Workers "workers"): deleteOrder: must be one of '
         "'oldest', 'newest' or 'random'"),
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS.replace("1h30m", "soon")),
         'document 4 (Workers "workers"): provisionTimeout: must be a duration like 90s'),
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS.replace("maxSurge: 25%", "maxSurge: 250%")),
         'document 4 (Workers "workers"): update.maxSurge: must be an integer or a percentage'),
        ((CLUSTER, CLASS, CONTROL_PLANE,
          WORKERS.replace("maxSurge: 25%, maxUnavailable: 1", "maxSurge: 0, maxUnavailable: 0%")),
         'document 4 (Workers "workers"): update: maxSurge and maxUnavailable cannot both be 0'),
        # QA: a quoted size was taken, while the API refuses a quoted count.
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS.replace("size: 2", 'size: "2"')),
         'cluster.yaml: document 4 (Workers "workers"): machineClass.size: must be an integer, '
         "not a string (remove the quotes)"),
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS.replace("maxInFlight: 2", 'maxInFlight: "2"')),
         'document 4 (Workers "workers"): remediation.maxInFlight: must be an integer, not a'),
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS.replace("size: 2", "size: 2.0")),
         'document 4 (Workers "workers"): machineClass.size: must be an integer'),
        ((CLUSTER, CLASS.replace("kernel_args: []", 'secure_boot: "yes"'), CONTROL_PLANE),
         'document 2 (MachineClass "aws-small"): secure_boot: must be true or false'),
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS.replace("maxInFlight: 2", "maxInFlight: two")),
         'document 4 (Workers "workers"): remediation.maxInFlight: must be an integer'),
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS + "colour: blue\n"),
         'document 4 (Workers "workers"): colour: unknown field'),
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS.replace("name: workers\n", "")),
         "document 4 (Workers): name: is required for Workers"),
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS.replace("name: workers", "name: control-planes")),
         'document 4 (Workers "control-planes"): name: \'control-planes\' is reserved'),
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS.replace("name: workers", "name: Big_Workers")),
         'document 4 (Workers "Big_Workers"): name: must be lowercase letters, digits and'),
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS, WORKERS),
         'document 5 (Workers "workers"): name: duplicate set name (see document 4)'),
        ((CLUSTER, CLASS, CONTROL_PLANE, CONTROL_PLANE),
         'document 4 (ControlPlane "control-planes"): name: a second ControlPlane '
         "(see document 3)"),
        ((CLUSTER, CLASS, CONTROL_PLANE, WORKERS.replace("name: aws-small", "name: aws-big")),
         'document 4 (Workers "workers"): machineClass.name: unknown machine class '
         "'aws-big' (known: aws-small)"),
        ((CLUSTER, CLASS, CLASS),
         'document 3 (MachineClass "aws-small"): name: machine class \'aws-small\' is already '
         "defined in document 2"),
        ((CLUSTER, CLASS, CONTROL_PLANE.replace("size: 3", "size: 0")),
         'document 3 (ControlPlane "control-planes"): machineClass.size: a control plane needs'),
        ((CLUSTER, CLASS, CONTROL_PLANE + "update: {maxSurge: 2}\n"),
         'document 3 (ControlPlane "control-planes"): update.maxSurge: control planes are '
         "replaced one at a time"),
        ((CLUSTER, CLASS, CONTROL_PLANE + "update: {maxUnavailable: 1}\n"),
         "update.maxUnavailable: must be 0 for control planes"),
        ((CLUSTER, CLASS, CONTROL_PLANE + "name: x\n"),
         "name: a ControlPlane is always named 'control-planes'"),
        ((CLUSTER, CLASS, CONTROL_PLANE.replace("controlplane.yaml", "missing.yaml")),
         'document 3 (ControlPlane "control-planes"): config.file: cannot read /'),
        ((CLUSTER, CLASS, CONTROL_PLANE.replace("{file: controlplane.yaml}", "{}")),
         'document 3 (ControlPlane "control-planes"): config: give exactly one of file or inline'),
        ((CLUSTER, CLASS, WORKERS.replace('"machine: {install: {disk: /dev/sdb}}"', '"a: [b"')),
         'document 3 (Workers "workers"): patches[0]: line 1, column 6: not valid YAML'),
        ((CLUSTER, CLASS, WORKERS.replace('"machine: {install: {disk: /dev/sdb}}"', '"[1, 2]"')),
         'document 3 (Workers "workers"): patches[0]: document 1: must be a mapping'),
        ((CLUSTER.replace("v1.13.9", "v1.11"), CLASS),
         'document 1 (Cluster "demo"): talos.version: \'v1.11\' is not a Talos version like '
         "v1.13.9"),
        ((CLUSTER.replace("OMNI_JOIN_TOKEN", "NOPE"), CLASS),
         'document 1 (Cluster "demo"): join.api_url: environment variable NOPE is not set'),
        ((CLUSTER, CLUSTER), 'document 2 (Cluster "demo"): a second Cluster document'),
        ((CLASS,), "cluster.yaml: no Cluster document"),
        ((CLUSTER, "kind: Nodes\nname: x\n"),
         'cluster.yaml: document 2 (Nodes "x"): kind: must be one of Cluster, MachineClass'),
        ((CLUSTER, "name: x\n"), "cluster.yaml: document 2: kind: must be one of Cluster"),
        ((CLUSTER, "- just\n- a list\n"), "cluster.yaml: document 2: must be a mapping"),
        ((CLUSTER, CLASS.replace("provider: aws-dev\n", "")),
         'document 2 (MachineClass "aws-small"): provider: is required'),
        ((CLUSTER, CLASS.replace("  - eu-west-1b", "  - eu-west-1a")),
         "failureDomains: duplicate failure domain 'eu-west-1a'"),
        ((CLUSTER, CLASS.replace("  - eu-west-1b", "  - {name: x, nom: y}")),
         'document 2 (MachineClass "aws-small"): failureDomains[1].nom: unknown field'),
        ((CLUSTER, CLASS + "meta_values: [{key: 300, value: x}]\n"),
         "meta_values[0].key: must be <= 255"),
        ((CLUSTER.replace("name: demo", "name: " + "d" * 40), CLASS,
          WORKERS.replace("name: workers", "name: " + "w" * 20)),
         "name: cluster name + set name are too long for request ids"),
        ((CLUSTER, CLASS, WORKERS + "labels: {talprov.set: x}\n"),
         "labels: label 'talprov.set': the talprov. prefix is reserved"),
    ],
)
def test_errors_name_document_field_and_problem(
    base_dir: Path, docs: tuple[str, ...], expected: str
) -> None:
    message = error_of(stream(*docs), base_dir)
    assert expected in message, message
    assert message.startswith("cluster.yaml")


def test_malformed_yaml_names_line_without_quoting(base_dir: Path) -> None:
    message = error_of(f"kind: Cluster\nname: [{CANARY}\n", base_dir)
    assert message.startswith("cluster.yaml: line 3, column 1")
    assert "not valid YAML" in message
    assert "line" in message


def test_bad_yaml_in_config_file_does_not_leak_it(base_dir: Path) -> None:
    (base_dir / "controlplane.yaml").write_text(f"machine: [{CANARY}\n")
    message = error_of(stream(CLUSTER, CLASS, CONTROL_PLANE), base_dir)
    assert 'ControlPlane "control-planes"): config: line 2, column 1: not valid YAML' in message


def test_empty_stream_is_an_error(base_dir: Path) -> None:
    assert "empty spec" in error_of("---\n", base_dir)


def test_join_file_reference_and_no_control_plane(base_dir: Path) -> None:
    (base_dir / "token").write_text(CANARY + "\n")
    text = stream(CLUSTER.replace("${env:OMNI_JOIN_TOKEN}", "${file:token}"), CLASS, WORKERS)
    spec = load(text, base_dir)
    assert spec.join is not None
    assert spec.join.api_url.get_secret_value().endswith(CANARY)
    assert list(spec.sets) == ["workers"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("500ms", 0.5), (45, 45)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "15", "m15", "15x", "1h 30m", -5, True])
def test_bad_durations(text: str | int) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(text)


def test_scaled_copy_does_not_share_templates(base_dir: Path) -> None:
    spec = load(stream(CLUSTER, CLASS, CONTROL_PLANE, WORKERS), base_dir)
    template_hash(spec, "workers", "eu-west-1a")
    bigger = spec.scaled("workers", 7)
    assert bigger.sets["workers"].size == 7
    assert spec.sets["workers"].size == 2
    assert bigger._cache == {}


def test_a_set_without_config_is_refused_unless_the_cluster_joins_omni(
        base_dir: Path) -> None:
    # QA: a Workers document without `config` was accepted, and `apply` then made
    # machines with no config and no join: Talos in maintenance mode, never a node.
    without = WORKERS.replace("config: {file: worker.yaml}\n", "")
    no_join = CLUSTER.replace(CLUSTER.splitlines()[-1] + "\n", "")
    with pytest.raises(ConfigError) as caught:
        load_spec("---\n".join((no_join, CLASS, without)), "cluster.yaml", base_dir, env=ENV)
    assert str(caught.value).startswith(
        'cluster.yaml: document 3 (Workers "workers"): config: is required')
    assert "join" in str(caught.value)
    # Joined to Omni, the machines get the join documents and Omni their config.
    spec = load_spec("---\n".join((CLUSTER, CLASS, without)), "cluster.yaml", base_dir,
                     env=ENV)
    assert spec.join is not None
    assert "install" in spec.sets["workers"].machine_config.get_secret_value()
