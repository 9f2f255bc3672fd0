"""The `talprov` command: exit codes, error lines naming file and field, output formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import CANARY_CONFIG, CANARY_CREDENTIAL, Home
from tests.providers.fileprov import Cloud


def assert_usage_error(result_code: int, output: str, *needles: str) -> None:
    assert result_code == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.startswith("talprov: error:")]
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_providers_lists_installed_types_and_instances(home: Home) -> None:
    result = home.invoke("providers", "-o", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    types = {r["name"]: r for r in rows if r["kind"] == "type"}
    assert types["file"]["detail"] == "tests.providers.fileprov:FileProvider"
    assert "aws" in types  # the built-in driver registers through the same group
    instances = [r for r in rows if r["kind"] == "instance"]
    assert [(r["name"], r["type"]) for r in instances] == [("fake", "file")]


def test_schema_prints_provider_data_json_schema(home: Home) -> None:
    result = home.invoke("schema", "file")
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["properties"]["size"]["pattern"] == "^(small|medium|large)$"
    assert schema["additionalProperties"] is False


def test_schema_unknown_type_is_usage_error(home: Home) -> None:
    result = home.invoke("schema", "nosuch")
    assert_usage_error(result.exit_code, result.output, "TYPE", "unknown provider type 'nosuch'")


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("id: x\nprovider: [fake\n", ["bad.yaml: line", "not valid YAML"]),
        ("provider: nope\ntalos_version: v1.13.9\n",
         ["bad.yaml: provider", "unknown provider 'nope'"]),
        ("provider: fake\ntalos_version: v1.13.9\nprovider_data: {colour: red}\n",
         ["bad.yaml: provider_data.colour", "unknown field"]),
        ("provider: fake\ntalos_version: v1.13.9\nprovider_data: {size: 5}\n",
         ["bad.yaml: provider_data.size"]),
        ("provider: fake\ntalos_version: 1.11\n", ["bad.yaml: talos_version"]),
        ("provider: fake\ntalos_version: v1.13.9\nflavour: x\n", ["bad.yaml: flavour",
                                                                  "unknown field"]),
        ("provider: fake\ntalos_version: v1.13.9\nconfig: {file: missing.yaml}\n",
         ["bad.yaml: config.file", "cannot read"]),
        ("provider: fake\ntalos_version: v1.13.9\nconfig: {inline: 'machine: {type: x}'}\n",
         ["bad.yaml: config.inline"]),
        ("provider: fake\ntalos_version: v1.13.9\njoin: {api_url: '${env:NO_SUCH_VAR_X}'}\n",
         ["join.api_url", "NO_SUCH_VAR_X is not set"]),
    ],
)
def test_bad_request_files_exit_2_naming_file_and_field(
    home: Home, body: str, needles: list[str]
) -> None:
    path = home.root / "bad.yaml"
    path.write_text(body)
    result = home.invoke("machine", "create", "-f", str(path))
    assert_usage_error(result.exit_code, result.output, *needles)


def test_unreadable_config_file_exit_2(home: Home) -> None:
    proc = home.run("--config", str(home.root / "nope.yaml"), "machine", "list")
    assert_usage_error(proc.returncode, proc.stderr, "nope.yaml", "cannot read config file")


@pytest.mark.parametrize(
    ("config", "needles"),
    [
        ({"providers": {"x": {"type": "nosuch"}}}, ["providers.x.type", "unknown provider type"]),
        ({"providers": {"x": {"type": "file"}}}, ["providers.x.path", "is required"]),
        ({"providers": {"x": {"type": "file", "path": "/tmp/c", "colour": 1}}},
         ["providers.x.colour", "unknown field"]),
        ({"stores": "sqlite://"}, ["talprov.yaml: stores", "unknown field"]),
        ({"providers": {"x": {"type": "file", "path": "${file:/no/such/secret}"}}},
         ["providers.x.path", "cannot read /no/such/secret"]),
    ],
)
def test_bad_config_files_exit_2_naming_field(
    home: Home, config: dict[str, object], needles: list[str]
) -> None:
    home.config_path.write_text(yaml.safe_dump(config))
    request = home.write_request("r-1", provider="x")
    proc = home.run("machine", "create", "-f", str(request))
    assert_usage_error(proc.returncode, proc.stderr, *needles)


def test_malformed_config_yaml_names_line(home: Home) -> None:
    home.config_path.write_text("providers:\n  x: {type: file\n")
    proc = home.run("machine", "list")
    assert_usage_error(proc.returncode, proc.stderr, "talprov.yaml: line", "not valid YAML")


def test_create_wait_list_get_delete_round_trip(home: Home) -> None:
    request = home.write_request("web-1", provider_data={"size": "medium"})
    result = home.invoke("machine", "create", "-f", str(request), "--wait", "-o", "json")
    assert result.exit_code == 0, result.output
    listed = json.loads(home.invoke("machine", "list", "-o", "json").output)
    assert [r["id"] for r in listed] == ["web-1"]
    row = listed[0]
    for key in ("id", "provider", "stage", "machine_uuid", "infra_id", "labels", "error"):
        assert key in row
    assert row["stage"] == "provisioned"
    assert row["labels"] == {"role": "worker"}
    cloud = Cloud(home.cloud_path())
    assert [m["infra_id"] for m in cloud.machines()] == [row["infra_id"]]
    assert cloud.machines()[0]["size"] == "medium"

    got = yaml.safe_load(home.invoke("machine", "get", "web-1", "-o", "yaml").output)
    assert got["infra_id"] == row["infra_id"]
    assert any(e["message"].startswith("provisioned") for e in got["events"])

    table = home.invoke("machine", "list")
    assert "web-1" in table.output
    assert "provisioned" in table.output

    result = home.invoke("machine", "delete", "web-1", "--wait")
    assert result.exit_code == 0, result.output
    assert cloud.machines() == []
    assert json.loads(home.invoke("machine", "list", "-o", "json").output) == []
    gone = json.loads(home.invoke("machine", "list", "--all", "-o", "json").output)
    assert [r["stage"] for r in gone] == ["gone"]


def test_create_without_wait_records_and_reconcile_does_the_work(home: Home) -> None:
    request = home.write_request("later-1")
    proc = home.run("machine", "create", "-f", str(request), "-o", "json", check=True)
    assert json.loads(proc.stdout)["stage"] == "pending"
    assert Cloud(home.cloud_path()).machines() == []
    for _ in range(10):
        home.run("reconcile", "--once", check=True)
        got = json.loads(home.run("machine", "get", "later-1", "-o", "json").stdout)
        if got["stage"] == "provisioned":
            break
    assert got["stage"] == "provisioned"


def test_failed_request_with_wait_exits_1(home: Home) -> None:
    home.providers["fake"]["fail_creates"] = True
    home.write_config()
    request = home.write_request("doomed-1")
    result = home.invoke("machine", "create", "-f", str(request), "--wait", "-o", "json")
    assert result.exit_code == 1
    # The request failed after bounded attempts (its capacity error is named).
    row = json.loads(home.invoke("machine", "get", "doomed-1", "-o", "json").output)
    assert row["stage"] == "failed"
    assert "no capacity" in row["error"]


def test_get_unknown_request_exits_1(home: Home) -> None:
    result = home.invoke("machine", "get", "nope-1")
    assert result.exit_code == 1
    assert "request nope-1 not found" in result.output


def test_same_id_different_body_is_a_conflict(home: Home) -> None:
    first = home.write_request("dup-1")
    assert home.invoke("machine", "create", "-f", str(first)).exit_code == 0
    assert home.invoke("machine", "create", "-f", str(first)).exit_code == 0  # idempotent
    changed = home.write_request("dup-1", talos_version="v1.11.6")
    result = home.invoke("machine", "create", "-f", str(changed))
    assert_usage_error(result.exit_code, result.output, "dup-1", "different body")


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_canaries_never_appear_in_cli_output(home: Home, log_format: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets in the machine config and a provider credential, through every output
    form and both log formats."""
    monkeypatch.setenv("TALPROV_LOG_FORMAT", log_format)
    request = home.write_request("canary-1")
    outputs = [home.run("-vv", "machine", "create", "-f", str(request), "--wait", check=True)]
    for fmt in ("table", "json", "yaml"):
        outputs.append(home.run("machine", "list", "-o", fmt, check=True))
        outputs.append(home.run("machine", "get", "canary-1", "-o", fmt, check=True))
    outputs.append(home.run("-vv", "reconcile", "--once", check=True))
    outputs.append(home.run("providers", "--health", "-o", "json", check=True))
    outputs.append(home.run("-vv", "machine", "delete", "canary-1", "--wait", check=True))
    text = "".join(p.stdout + p.stderr for p in outputs)
    assert "canary-1" in text  # the outputs are real
    logged = [line for p in outputs for line in p.stderr.splitlines()]
    assert logged
    if log_format == "json":
        assert all(json.loads(line)["message"] for line in logged)
    assert CANARY_CONFIG not in text
    assert CANARY_CREDENTIAL not in text
    # ...but the machine really received the config with the secret in it.
    store_bytes = Path(home.store_url.removeprefix("sqlite:///")).read_bytes()
    assert CANARY_CONFIG.encode() in store_bytes  # no TALPROV_STORE_KEY: stored in clear


def test_store_key_encrypts_machine_config_at_rest(home: Home, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    monkeypatch.setenv("TALPROV_STORE_KEY", STORE_KEY)
    request = home.write_request("enc-1")
    result = home.invoke("machine", "create", "-f", str(request))
    assert result.exit_code == 0, result.output
    db = Path(home.store_url.removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in db.parent.glob("state.db*"))
    assert CANARY_CONFIG.encode() not in raw


STORE_KEY = "0uP4xJm3V8cQyT2nW9rZ5bK7dH1fL6sA_gE-oRtYiUw"  # token_urlsafe(32)'s length


def test_a_short_store_key_is_refused(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    # QA: TALPROV_STORE_KEY=short was taken silently, though HKDF does not stretch it.
    monkeypatch.setenv("TALPROV_STORE_KEY", "short")
    result = home.invoke("machine", "list")
    assert result.exit_code == 2, result.output
    assert "TALPROV_STORE_KEY" in result.output
    assert "32" in result.output
    assert "Traceback" not in result.output
    assert "short" not in result.output.replace("too short", "")


def test_a_request_sealed_with_another_key_can_be_got_and_deleted(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALPROV_STORE_KEY", STORE_KEY)
    assert home.invoke("machine", "create", "-f", str(home.write_request("old-1"))).exit_code == 0
    other = STORE_KEY[::-1]
    monkeypatch.setenv("TALPROV_STORE_KEY", other)
    got = home.invoke("machine", "get", "old-1", "-o", "json")
    assert got.exit_code == 0, got.output
    view = json.loads(got.output)
    assert "TALPROV_STORE_KEY" in view["error"]
    assert view["config_sha256"] is None
    assert STORE_KEY not in got.output
    assert other not in got.output
    deleted = home.invoke("machine", "delete", "old-1")
    assert deleted.exit_code == 0, deleted.output


def test_creating_a_request_while_it_is_being_deleted_exits_1(home: Home) -> None:
    # Review: BeingDeleted is a Conflict, which exits 2 (invalid input); the input
    # is fine, the timing is not: exit 1, and say when to try again.
    request_file = str(home.write_request("again-1"))
    assert home.invoke("machine", "create", "-f", request_file).exit_code == 0
    assert home.invoke("machine", "delete", "again-1").exit_code == 0
    again = home.invoke("machine", "create", "-f", request_file)
    assert again.exit_code == 1, again.output
    assert "again-1 is being deleted; create it again once it is gone" in again.stderr


DEFAULT_ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
EXTENSIONS_SCHEMATIC = """\
customization:
  systemExtensions:
    officialExtensions:
      - siderolabs/amd-ucode
      - siderolabs/gvisor
      - siderolabs/gasket-driver
"""


def test_image_id_prints_the_factory_ids_of_its_published_vectors(home: Home) -> None:
    from tests.unit.talos.test_schematic import UNMARSHAL_VECTORS

    for index, (text, expected) in enumerate(UNMARSHAL_VECTORS):
        path = home.root / f"schematic-{index}.yaml"
        path.write_text(text)
        result = home.invoke("image", "id", "-f", str(path))
        assert result.exit_code == 0, result.output
        assert result.output == f"{expected}\n"
    path = home.root / "extensions.yaml"
    path.write_text(EXTENSIONS_SCHEMATIC)
    proc = home.run("image", "id", "-f", str(path), check=True)  # a real process, once
    assert proc.stdout == "51ff3e49313773332729a5c04e57af0dbe2e6d3f65ff638e6d4c3a05065fefff\n"


def test_image_id_bad_schematic_names_field(home: Home) -> None:
    path = home.root / "bad-schematic.yaml"
    path.write_text("customization:\n  extraKernelArgs: noapic\n")
    result = home.invoke("image", "id", "-f", str(path))
    assert_usage_error(result.exit_code, result.output, "bad-schematic.yaml",
                       "extraKernelArgs")


def test_image_urls_and_pull_against_local_factory(home: Home, image_factory: object) -> None:
    from tests.emulators.factory import FakeImageFactory

    assert isinstance(image_factory, FakeImageFactory)
    home.write_config(image_factory={"url": image_factory.url})
    path = home.root / "default.yaml"
    path.write_text("{}\n")
    result = home.invoke("image", "urls", "-f", str(path), "--version", "v1.13.9", "-o", "json")
    assert result.exit_code == 0, result.output
    urls = {(r["platform"], r["kind"]): r["url"] for r in json.loads(result.output)}
    base = f"{image_factory.url}/image/{DEFAULT_ID}/v1.13.9"
    assert urls[("aws", "disk")] == f"{base}/aws-amd64.raw.xz"
    assert urls[("vmware", "disk")] == f"{base}/vmware-amd64.ova"
    assert urls[("nocloud", "iso")] == f"{base}/nocloud-amd64.iso"
    assert urls[("metal", "kernel")] == f"{base}/kernel-amd64"
    first = home.invoke("image", "pull", "-f", str(path), "--version", "v1.13.9",
                        "--asset", "openstack-disk")
    assert first.exit_code == 0, first.output
    cached = Path(first.output.strip().splitlines()[-1])
    assert cached.read_bytes()[:6] == b"\xfd7zXZ\x00"  # an xz stream
    again = home.invoke("image", "pull", "-f", str(path), "--version", "v1.13.9",
                        "--asset", "openstack-disk")
    assert again.exit_code == 0
    asset = f"/image/{DEFAULT_ID}/v1.13.9/openstack-amd64.raw.xz"
    assert image_factory.hits[asset] == 1  # the second pull came from the cache
