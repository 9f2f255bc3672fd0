"""Machine configs checked against Talos's own JSON Schema and its decoder's rules.

The accepted configs are Talos's and Omni's own test data (tests/unit/talos/data,
see the NOTICE there): the stability configs of v1.10/v1.11 that Talos's
v1alpha1 tests load, and the join-only config Omni's siderolink tests expect.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from talprov.cli.demo import machine_config
from talprov.errors import ConfigError
from talprov.talos.configschema import SCHEMA_TAGS, UNDOCUMENTED_FIELDS, check_config
from talprov.talos.machineconfig import load_documents
from talprov.talos.versions import DEFAULT_TALOS_VERSION, SUPPORTED_LINES

DATA = Path(__file__).parent / "data"
STABILITY = sorted((DATA / "stability").glob("v1.1*/*.yaml"))
OMNI_JOIN = sorted((DATA / "omni").glob("join-*.yaml"))
CANARY = "CANARY-ca-key-5e0b"


def check(text: str, version: str = DEFAULT_TALOS_VERSION) -> list[str]:
    return check_config(load_documents(text, "c.yaml"), "c.yaml", version)


def refusal(text: str, version: str = DEFAULT_TALOS_VERSION) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        check(text, version)
    assert CANARY not in str(caught.value)
    return caught.value


def test_every_supported_line_has_its_schema_shipped_with_the_package() -> None:
    assert sorted(SCHEMA_TAGS) == list(SUPPORTED_LINES) == sorted(UNDOCUMENTED_FIELDS)
    notice = Path(__file__).parents[3] / "talprov" / "talos" / "schemas" / "NOTICE"
    assert "Mozilla Public License" in notice.read_text()


def test_the_eight_stability_configs_of_talos_are_accepted_with_a_persist_warning() -> None:
    assert len(STABILITY) == 8
    for path in STABILITY:
        for version in ("v1.10.9", "v1.11.6"):
            warnings = check(path.read_text(), version)
            # ``persist`` is decoded by Talos (docgen:nodoc) but refused by its schema.
            assert [w.split(": ")[2] for w in warnings] == ["persist"], (path, version)


@pytest.mark.parametrize("line", SUPPORTED_LINES)
def test_omnis_join_only_config_is_accepted(line: tuple[int, int]) -> None:
    assert len(OMNI_JOIN) == 2
    for path in OMNI_JOIN:
        assert check(path.read_text(), f"v{line[0]}.{line[1]}.0") == []


@pytest.mark.parametrize("machine_type", ["join", "init", "worker", "controlplane", None])
def test_machine_types_talos_decodes_are_accepted(machine_type: str | None) -> None:
    # Talos's ParseType reads join and an empty type as worker, init as controlplane.
    body = f"  type: {machine_type}\n" if machine_type else "  kubelet: {}\n"
    assert check(f"version: v1alpha1\nmachine:\n{body}") == []


def test_an_unknown_field_is_refused_naming_its_path_never_the_value() -> None:
    error = refusal(f"version: v1alpha1\nmachine:\n  type: worker\n  foo: 1\n  token: {CANARY}\n")
    assert error.where == "c.yaml: document 1 (v1alpha1): machine.foo"
    assert "not a field" in error.message


@pytest.mark.parametrize(("text", "where", "words"), [
    ("version: v1alpha1\nmachine:\n  type: master\n",
     "c.yaml: document 1 (v1alpha1): machine.type", "controlplane, worker"),
    (f"version: v1alpha1\nmachine:\n  install:\n    wipe: {CANARY}\n",
     "c.yaml: document 1 (v1alpha1): machine.install.wipe", "boolean"),
    (f"apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: http://{CANARY}/\n",
     "c.yaml: document 1 (SideroLinkConfig): apiUrl", "pattern"),
    (f"version: v1alpha1\nmachine:\n  type: worker\n---\napiVersion: v1alpha1\nkind: Foo\n"
     f"name: {CANARY}\n", "c.yaml: document 2: kind", "not a document kind"),
    ("apiVersion: v1alpha2\nkind: SideroLinkConfig\n", "c.yaml: document 1: kind",
     "not a document kind"),
    (f"token: {CANARY}\n", "c.yaml: document 1: kind", "required"),
    ("apiVersion: v1alpha1\nkind: KmsgLogConfig\nname: a\n---\n"
     "apiVersion: v1alpha1\nkind: KmsgLogConfig\nname: a\n", "c.yaml: document 2 (KmsgLogConfig/a)",
     "twice"),
    ("machine: {type: worker}\n---\nversion: v1alpha1\ncluster: {}\n",
     "c.yaml: document 2 (v1alpha1)", "twice"),
])
def test_what_talos_refuses_is_refused_naming_document_and_path(
        text: str, where: str, words: str) -> None:
    error = refusal(text)
    assert error.where == where
    assert words in error.message


def test_kinds_follow_the_version_schema() -> None:
    # HostnameConfig arrived in v1.12: the v1.11 schema and decoder do not know it.
    text = "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: a\n"
    assert check(text, "v1.12.0") == []
    assert "not a document kind" in refusal(text, "v1.11.5").message


def test_numbers_in_string_fields_are_accepted_as_go_decodes_them() -> None:
    assert check("version: v1alpha1\nmachine:\n  type: worker\n  nodeLabels:\n    a: 1\n") == []


def test_an_unknown_newer_version_is_checked_with_the_newest_schema() -> None:
    assert check("apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: a\n", "v1.14.0") == []
    assert refusal("version: v1alpha1\nmachine: {foo: 1}\n", "v1.14.0").where.endswith(
        "machine.foo")


@pytest.mark.parametrize("kind", ["controlplane", "worker"])
def test_the_demos_configs_validate_against_the_default_versions_schema(kind: str) -> None:
    assert check(machine_config(kind, "demo")) == []


def _request(config: str, version: str = DEFAULT_TALOS_VERSION) -> object:
    from talprov.requestfile import parse_request

    raw = {"id": "m1", "provider": "lab", "talos_version": version, "config": {"inline": config}}
    return parse_request(raw, where="r.yaml", base_dir=Path("."))


def test_request_files_apply_talos_rules_to_their_config() -> None:
    # Before: the join-only config was refused (no v1alpha1 document) and machine.foo passed.
    _request(OMNI_JOIN[0].read_text())
    _request("version: v1alpha1\nmachine:\n  type: join\n")
    with pytest.raises(ConfigError) as caught:
        _request("version: v1alpha1\nmachine:\n  type: worker\n  foo: 1\n")
    assert caught.value.where == "r.yaml: config.inline: document 1 (v1alpha1): machine.foo"
    with pytest.raises(ConfigError) as caught:
        _request("version: v1alpha1\nmachine:\n  type: worker\n", version="v1.13.09")
    assert caught.value.where == "r.yaml: talos_version"


def test_pyproject_ships_the_schemas_and_their_notice_as_package_data() -> None:
    import fnmatch
    import tomllib

    root = Path(__file__).parents[3]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["talprov"]
    shipped = [p.relative_to(root / "talprov").as_posix()
               for p in (root / "talprov" / "talos" / "schemas").iterdir()]
    assert sorted(shipped) == sorted(
        ["talos/schemas/NOTICE", *(f"talos/schemas/config.schema.{t}.json"
                                   for t in SCHEMA_TAGS.values())])
    for name in shipped:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
