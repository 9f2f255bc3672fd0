"""Machines are named in their config as Talos of their version honours it.

Facts from siderolabs/talos: ``HostnameConfig`` (``apiVersion: v1alpha1``, fields
``auto`` = stable|off and ``hostname``; both set only with ``auto: off``) appears in
v1.12.0 (pkg/machinery/config/types/network/hostname.go); the standard static-hostname
patch (config/generate/stdpatches ``WithStaticHostname``) emits it with ``auto: off``
from v1.12 and ``machine.network.hostname`` before; a HostnameConfig beside a
v1alpha1 hostname or ``features.stableHostname`` fails ``V1Alpha1ConflictValidate``.
Every emitted document is checked against the JSON Schema of its version (the
schemas Talos publishes, shipped in talprov/talos/schemas).
"""

from __future__ import annotations

import gc
import json
from functools import cache
from importlib.resources import files
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from talprov.talos import hostname
from talprov.talos.hostname import has_hostname_config, with_hostname
from talprov.talos.machineconfig import load_documents

SCHEMAS = {"v1.9.6": False, "v1.10.9": False, "v1.11.6": False, "v1.12.11": True,
           "v1.13.9": True}  # version -> has HostnameConfig
CONFIG = "version: v1alpha1\nmachine:\n  type: worker\n  token: tok-secret\n"


@cache
def validator(version: str) -> Draft202012Validator:
    text = (files("talprov.talos") / "schemas" / f"config.schema.{version}.json").read_text()
    return Draft202012Validator(json.loads(text))


def schema_errors(version: str, document: dict[str, Any]) -> list[str]:
    return [error.message for error in validator(version).iter_errors(document)]


@pytest.mark.parametrize("version", sorted(SCHEMAS))
def test_the_name_is_set_as_that_version_honours_it(version: str) -> None:
    named = with_hostname(CONFIG, "worker-7", version)
    documents = load_documents(named, "named")
    for document in documents:
        assert schema_errors(version, document) == []
    if SCHEMAS[version]:
        assert documents[1] == {"apiVersion": "v1alpha1", "kind": "HostnameConfig",
                                "auto": "off", "hostname": "worker-7"}
        assert named.startswith(CONFIG)  # the user's bytes are kept
        assert "hostname" not in documents[0]["machine"].get("network", {})
    else:
        assert documents == [{"version": "v1alpha1", "machine": {
            "type": "worker", "token": "tok-secret", "network": {"hostname": "worker-7"}}}]


@pytest.mark.parametrize("version", sorted(SCHEMAS))
def test_the_schema_agrees_on_which_mechanism_exists(version: str) -> None:
    document = {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "hostname": "x"}
    assert (schema_errors(version, document) == []) is SCHEMAS[version]
    assert has_hostname_config(version) is SCHEMAS[version]
    legacy = {"version": "v1alpha1",
              "machine": {"type": "worker", "network": {"hostname": "x"}}}
    # v1.12's v1alpha1 schema no longer has machine.network.hostname.
    assert (schema_errors(version, legacy) == []) is not SCHEMAS[version]


@pytest.mark.parametrize("version", ["v1.11.5", "v1.13.9"])
def test_a_name_the_user_gave_is_kept(version: str) -> None:
    own = CONFIG + "  network:\n    hostname: mine\n"
    assert with_hostname(own, "worker-7", version) == own
    typed = CONFIG + "---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: mine\n"
    assert with_hostname(typed, "worker-7", version) == typed


def test_talosctl_gen_configs_stable_hostname_is_replaced_by_the_name() -> None:
    generated = CONFIG + "---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n"
    named = load_documents(with_hostname(generated, "worker-7", "v1.12.11"), "named")
    assert named[1] == {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "off",
                        "hostname": "worker-7"}
    assert schema_errors("v1.12.11", named[1]) == []


def test_left_alone_where_talos_would_refuse_or_omni_completes_the_config() -> None:
    stable = CONFIG + "  features:\n    stableHostname: true\n"
    assert with_hostname(stable, "worker-7", "v1.13.9") == stable
    join_only = "apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: https://o.example\n"
    assert with_hostname(join_only, "worker-7", "v1.13.9") == join_only
    assert with_hostname("", "worker-7", "v1.13.9") == ""


def test_naming_twice_changes_nothing() -> None:
    for version in ("v1.11.5", "v1.13.9"):
        once = with_hostname(CONFIG, "123", version)
        assert with_hostname(once, "123", version) == once
        assert "123" in [d.get("hostname") for d in load_documents(once, "x")] + [
            load_documents(once, "x")[0]["machine"].get("network", {}).get("hostname")]


@pytest.mark.parametrize("version", ["v1.11.6", "v1.13.9"])
def test_machines_sharing_a_config_are_each_named_and_it_is_read_once(
        version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = CONFIG.replace("tok-secret", f"tok-{version}")  # not read by another test
    reads: list[str] = []

    def counting(text: str, where: str) -> list[dict[str, Any]]:
        reads.append(text)
        return load_documents(text, where)

    monkeypatch.setattr(hostname, "read_for_patching", counting)
    reading = hostname.ConfigReading(config)
    named = {name: reading.named(name, version) for name in ("w-1", "w-2", "w-3")}
    for name, text in named.items():
        documents = load_documents(text, "named")
        if has_hostname_config(version):
            assert [d["hostname"] for d in documents if d.get("kind") == "HostnameConfig"] == [
                name]
        else:
            assert documents[0]["machine"]["network"]["hostname"] == name
    # The config was read once, for all three (the v1alpha1 patch merges into each
    # machine's own copy of its document).
    assert reads.count(config) == 1
    # Alone, each naming reads it only where it patches it (the how is remembered).
    reads.clear()
    for name in ("w-4", "w-5"):
        with_hostname(config, name, version)
    assert reads.count(config) == (0 if has_hostname_config(version) else 2)


def strings_held_by(module: Any) -> list[str]:
    """Every string the module's own functions and containers hold, followed through
    containers and caches (an ``lru_cache``'s keys too), never into other modules."""
    found: list[str] = []
    seen: set[int] = set()
    todo: list[Any] = [value for value in vars(module).values()
                       if getattr(value, "__module__", None) == module.__name__
                       or isinstance(value, (dict, list, tuple, set))]
    while todo:
        value = todo.pop()
        if id(value) in seen or isinstance(value, type(module)):
            continue
        seen.add(id(value))
        if isinstance(value, str):
            found.append(value)
            continue
        if callable(value) and getattr(value, "__module__", module.__name__) != module.__name__:
            continue
        todo.extend(gc.get_referents(value))
    return found


def test_the_naming_cache_keeps_no_config_text() -> None:
    # Review: the cache was keyed by the config text itself, CA keys and all.
    canary = "ca-key-canary-5d0e1b"
    config = CONFIG.replace("tok-secret", canary)
    assert with_hostname(config, "w-1", "v1.13.9") != config
    assert with_hostname(config, "w-2", "v1.13.9") != config
    assert not [text for text in strings_held_by(hostname) if canary in text]
