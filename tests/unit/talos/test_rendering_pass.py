"""A pass renders user data reading each distinct config once, with the same bytes.

The reference below is the rendering as it was before a pass shared anything: each
request's config parsed, patched with its name (``apply_patches``, checked against
Talos's configpatcher testdata) and written on its own, then parsed again to see
which join documents it already has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from talprov.providers.errors import InvalidRequest
from talprov.providers.types import JoinSpec, MachineRequest
from talprov.talos import goyaml
from talprov.talos.hostname import has_hostname_config, hostname_document
from talprov.talos.join import RenderingPass, _join_document_list, user_data_for, uses_documents
from talprov.talos.machineconfig import apply_patches, load_documents

DATA = Path(__file__).parent / "data"
WORKER = (DATA / "stability" / "v1.11" / "base-worker.yaml").read_text()
UNNAMED_WORKER = WORKER.replace("        stableHostname: true\n", "")
MULTIDOC = (DATA / "configpatcher" / "multidoc" / "config.yaml").read_text().replace(
    "    hostname: hostname1\n", "")
MANIFESTS = ("version: v1alpha1\nmachine:\n  type: worker\ncluster:\n  inlineManifests:\n"
             "    - name: a\n      contents: |2-\n\n\n        kind: Namespace\n")
CONFIGS = {
    "talosctl worker": WORKER,
    "worker with a stable HostnameConfig": UNNAMED_WORKER + "---\napiVersion: v1alpha1\n"
    "kind: HostnameConfig\nauto: stable\n",
    "multi-document with a join document": MULTIDOC,
    "inline manifests": MANIFESTS,
    "named already": MULTIDOC.replace("network:\n", "network:\n    hostname: fixed\n", 1),
    "join documents only": "apiVersion: v1alpha1\nkind: EventSinkConfig\nendpoint: '[::1]:1'\n",
    "empty": "",
    "holding the name's marker": "version: v1alpha1\nmachine:\n  token: TalprovNameMarker\n",
}
JOINS = {"no join": None, "documents": "auto", "kernel args": "kernel_args"}
IDS = ("w-1", "w-2", "007", "1e3")  # the last two are written quoted


def rendered_alone(request: MachineRequest, named: bool) -> str:
    """The reference: one request's user data as rendered before passes shared readings."""
    config = request.machine_config.get_secret_value()
    if named:
        documents = load_documents(config, "reference")
        legacy = next((d for d in documents if "kind" not in d), None)
        typed = [d for d in documents if d.get("kind") == "HostnameConfig"]
        machine = legacy.get("machine", {}) if legacy else {}
        has_name = bool((machine.get("network") or {}).get("hostname")) or any(
            d.get("hostname") for d in typed)
        stable = (machine.get("features") or {}).get("stableHostname") is True
        new = has_hostname_config(request.talos_version)
        if legacy is None or has_name or (new and stable):
            pass
        elif not new:
            patch = goyaml.mapping_lines([("machine", {"network": {"hostname": request.id}})], 0)
            config = apply_patches(config, ["\n".join(patch) + "\n"], "reference")
        elif typed:
            config = apply_patches(config, [hostname_document(request.id)], "reference")
        else:
            config = config.rstrip().rstrip("-").rstrip() + "\n---\n" + hostname_document(
                request.id) if config.strip() else hostname_document(request.id)
    if not uses_documents(request.join):
        return config
    assert request.join is not None
    present = {(str(d.get("kind")), str(d.get("name", "")))
               for d in load_documents(config, "reference")}
    body = config.rstrip() + "\n" if config.strip() else ""
    return "---\n".join([*([body] if body else []), *(
        text for kind, name, text in _join_document_list(request.join)
        if (kind, name) not in present)])


def request(config: str, request_id: str, version: str, join: str | None) -> MachineRequest:
    spec = None if join is None else JoinSpec(
        api_url=SecretStr("grpc://127.0.0.1:1?jointoken=tok"), mode=join)
    return MachineRequest(id=request_id, provider="p", talos_version=version,
                          machine_config=config, join=spec)


@pytest.mark.parametrize("version", ["v1.11.5", "v1.13.9"])
@pytest.mark.parametrize("named", [True, False])
@pytest.mark.parametrize("join", sorted(JOINS))
def test_a_pass_renders_the_same_bytes_as_each_request_alone(
        version: str, named: bool, join: str) -> None:
    rendering = RenderingPass()
    for label, config in CONFIGS.items():
        for request_id in IDS:
            req = request(config, request_id, version, JOINS[join])
            shared = user_data_for(req, named=named, rendering=rendering)
            assert shared == rendered_alone(req, named), (label, request_id)
            assert shared == user_data_for(req, named=named), (label, request_id)


def test_each_machine_keeps_its_own_name_when_the_config_is_shared() -> None:
    rendering = RenderingPass()
    for version in ("v1.11.5", "v1.13.9"):
        config = CONFIGS["worker with a stable HostnameConfig"]
        # (not "1e3": the v1alpha1 writer leaves it plain, read back as a float; see the report)
        texts = {rid: user_data_for(request(config, rid, version, "auto"), rendering=rendering)
                 for rid in IDS[:3]}
        for rid, text in texts.items():
            documents = load_documents(text, "named")
            names = [d.get("hostname") for d in documents if d.get("kind") == "HostnameConfig"]
            legacy = documents[0]["machine"]["network"].get("hostname")
            assert (names == [rid]) if has_hostname_config(version) else (legacy == rid)


def counting_parses(monkeypatch: pytest.MonkeyPatch, marker: str) -> list[int]:
    """Counts the YAML parses of a stream holding ``marker`` (the config's, not the patches')."""
    parses = [0]
    real = yaml.load_all

    def load_all(stream: Any, Loader: Any) -> Any:
        if marker in str(stream):
            parses[0] += 1
        return real(stream, Loader=Loader)

    monkeypatch.setattr(yaml, "load_all", load_all)
    return parses


@pytest.mark.parametrize("version", ["v1.11.5", "v1.13.9"])
def test_a_pass_parses_each_distinct_config_once(
        version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    configs = [f"# parse-canary-{version}-{n}\n" + CONFIGS["worker with a stable HostnameConfig"]
               for n in (1, 2)]
    parses = counting_parses(monkeypatch, f"parse-canary-{version}")
    rendering = RenderingPass()
    for index in range(20):
        user_data_for(request(configs[index % 2], f"w-{index}", version, "auto"),
                      rendering=rendering)
    assert parses[0] == 2  # once per distinct config, not per request (22 before)


def test_a_config_that_does_not_parse_fails_every_request_of_the_pass() -> None:
    rendering = RenderingPass()
    for rid in ("w-1", "w-2"):
        with pytest.raises(InvalidRequest) as caught:
            user_data_for(request("machine: [\n  secret-canary", rid, "v1.11.5", "auto"),
                          rendering=rendering)
        assert caught.value.field == "machine_config"
        assert "secret-canary" not in str(caught.value)
