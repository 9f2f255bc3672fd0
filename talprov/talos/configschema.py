"""Machine configs checked as Talos checks them: its JSON Schema plus its decoder's rules.

Talos publishes a JSON Schema (draft 2020-12) of its machine configuration for
each release; talprov ships the one of the newest patch release of each minor
line it supports (``talprov/talos/schemas/``, MPL-2.0, see the NOTICE there)
and checks every document of a config against the definition of its kind.

The schema is not the whole truth, so a few rules of Talos's config decoder
(``pkg/machinery/config/configloader/internal/decoder``) are kept here as small
explicit checks:

* which documents exist: a document is typed when it has ``kind``; without one
  it is the v1alpha1 document when its ``apiVersion`` is ``v1alpha1`` or it has
  one of ``machine``, ``cluster``, ``debug``, ``persist``; anything else is
  refused (``missing kind``). A config may consist of typed documents only.
  (apiVersion, kind, name) may appear once.
* ``machine.type``: the decoder also reads ``init`` and ``join`` (a worker) and
  a missing type (a worker); the schema lists only controlplane and worker.
* a schema ``string`` field is given a number or boolean: Go's YAML decoder
  takes the scalar's text, so Talos accepts it.
* fields Talos still decodes but leaves out of its schema (``docgen:nodoc`` in
  the Go types, e.g. the deprecated ``persist``) are accepted with a warning.

Configs carry cluster CA keys and join tokens: messages name the document, the
path and the problem, never a value.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from talprov.errors import ConfigError
from talprov.talos.versions import TalosVersion, parse_version, rules_line

log = logging.getLogger(__name__)

#: The schema file of each minor line: the newest patch release's, as Talos tagged it.
SCHEMA_TAGS: dict[tuple[int, int], str] = {
    (1, 9): "v1.9.6",
    (1, 10): "v1.10.9",
    (1, 11): "v1.11.6",
    (1, 12): "v1.12.11",
    (1, 13): "v1.13.9",
}
V1ALPHA1 = "v1alpha1.Config"
#: Keys that make a kind-less document the v1alpha1 one (Talos's decoder).
_LEGACY_KEYS = ("machine", "cluster", "debug", "persist")
#: machine.type values Talos's ParseType reads besides the schema's controlplane/worker.
DECODED_MACHINE_TYPES = ("init", "join", "")

# Fields of the v1alpha1 document that Talos decodes but marks ``docgen:nodoc``, so its
# schema refuses them; per line, read from pkg/machinery/config/types/v1alpha1 at the
# tag of SCHEMA_TAGS. ``[]`` stands for any list index.
_COMMON_UNDOCUMENTED = (
    "persist",
    "cluster.allowSchedulingOnMasters",
    "machine.install.bootloader",
    "cluster.etcd.subnet",
    "machine.network.interfaces[].cidr",
    "machine.network.interfaces[].vlans[].cidr",
)
_SINCE_1_10 = ("machine.disks", "machine.install.extensions")
_SINCE_1_12 = (
    "machine.time", "machine.registries", "machine.network.hostname",
    "machine.network.interfaces", "machine.network.nameservers",
    "machine.network.searchDomains", "machine.network.extraHostEntries",
    "machine.network.disableSearchDomain", "machine.install.extraKernelArgs",
    "cluster.apiServer.disablePodSecurityPolicy", "machine.features.rbac",
    "machine.features.stableHostname", "machine.features.apidCheckExtKeyUsage",
)
UNDOCUMENTED_FIELDS: dict[tuple[int, int], frozenset[str]] = {
    (1, 9): frozenset(_COMMON_UNDOCUMENTED),
    (1, 10): frozenset((*_COMMON_UNDOCUMENTED, *_SINCE_1_10)),
    (1, 11): frozenset((*_COMMON_UNDOCUMENTED, *_SINCE_1_10, "machine.systemDiskEncryption")),
    (1, 12): frozenset((*_COMMON_UNDOCUMENTED, *_SINCE_1_10, "machine.systemDiskEncryption",
                        *_SINCE_1_12)),
    (1, 13): frozenset((*_COMMON_UNDOCUMENTED, *_SINCE_1_10, "machine.systemDiskEncryption",
                        *_SINCE_1_12, "machine.network", "machine.env",
                        "machine.network.kubespan")),
}


@dataclass(frozen=True)
class _Schema:
    line: tuple[int, int]
    defs: dict[str, Any]
    #: (apiVersion, kind) of every typed document → its definition's name.
    kinds: dict[tuple[str, str], str]


@cache
def _schema(line: tuple[int, int]) -> _Schema:
    name = f"config.schema.{SCHEMA_TAGS[line]}.json"
    text = resources.files("talprov.talos").joinpath("schemas", name).read_text()
    document = json.loads(text)
    defs: dict[str, Any] = document["$defs"]
    kinds = {}
    for choice in document["oneOf"]:
        definition = choice["$ref"].removeprefix("#/$defs/")
        properties = defs[definition].get("properties", {})
        if "kind" in properties:
            key = (properties["apiVersion"]["enum"][0], properties["kind"]["enum"][0])
            kinds[key] = definition
    return _Schema(line, defs, kinds)


@cache
def _validator(line: tuple[int, int], definition: str) -> Draft202012Validator:
    schema = _schema(line)
    return Draft202012Validator({"$defs": schema.defs, "$ref": f"#/$defs/{definition}"})


class ConfigProblem(ConfigError):
    """A config problem located in one document: ``identity`` (apiVersion, kind,
    name) and ``field`` (dotted path, "" for the document) let a caller tell which
    file of a patched config brought it in."""

    def __init__(self, where: str, message: str, *, identity: tuple[str, str, str],
                 field: str) -> None:
        super().__init__(where, message)
        self.identity = identity
        self.field = field


def check_config(
    documents: list[dict[str, Any]], where: str, talos_version: str | TalosVersion,
) -> list[str]:
    """Check a loaded config as Talos ``talos_version`` would decode it; return the warnings.

    Raises ``ConfigProblem`` for the first problem, naming ``where``, the document
    and the field path (never a value). Warnings (fields Talos decodes though its
    schema leaves them out) are also logged. Pure apart from the log.
    """
    warnings: list[str] = []
    for problem in config_problems(documents, where, talos_version, warnings):
        raise problem
    for warning in warnings:
        log.warning("%s", warning)
    return warnings


def config_problems(
    documents: list[dict[str, Any]], where: str, talos_version: str | TalosVersion,
    warnings: list[str] | None = None,
) -> Iterator[ConfigProblem]:
    """Every problem :func:`check_config` would raise, in its order; warnings are
    appended to ``warnings``. Pure."""
    version = (talos_version if isinstance(talos_version, TalosVersion)
               else parse_version(talos_version))
    line = rules_line(version)
    schema = _schema(line)
    seen: set[tuple[str, str, str]] = set()
    for number, document in enumerate(documents, start=1):
        identity = document_identity(document)
        try:
            definition, label = _definition(document, number, schema, where)
        except ConfigError as exc:
            yield ConfigProblem(exc.where, exc.message, identity=identity, field="kind")
            continue
        if identity in seen:
            yield ConfigProblem(label, "appears twice (same apiVersion, kind and name)",
                                identity=identity, field="")
            continue
        seen.add(identity)
        for path, problem in _problems(document, definition, line):
            if problem is None:
                if warnings is not None:
                    warnings.append(
                        f"{label}: {path}: Talos v{line[0]}.{line[1]} still reads this "
                        "field but its schema no longer lists it (deprecated)")
            else:
                yield ConfigProblem(f"{label}: {path}" if path else label, problem,
                                    identity=identity, field=path)


def document_identity(document: dict[str, Any]) -> tuple[str, str, str]:
    """(apiVersion, kind, name) of a document; the kind-less one is ``v1alpha1``."""
    return (str(document.get("apiVersion", "")), str(document.get("kind") or "v1alpha1"),
            str(document.get("name", "")))


def document_label(document: dict[str, Any], number: int, where: str) -> str:
    """How messages name document ``number`` of ``where``: ``… document 2 (Kind/name)``."""
    kind = document.get("kind")
    if not kind:
        return f"{where}: document {number} (v1alpha1)"
    name = document.get("name")
    suffix = f"/{name}" if isinstance(name, str) and _PRINTABLE_NAME.match(name) else ""
    return f"{where}: document {number} ({kind}{suffix})"


def _definition(
    document: dict[str, Any], number: int, schema: _Schema, where: str,
) -> tuple[str, str]:
    """The schema definition of a document and the label errors use for it."""
    kind = document.get("kind")
    if kind is None or kind == "":
        if document.get("apiVersion") == "v1alpha1" or any(k in document for k in _LEGACY_KEYS):
            return V1ALPHA1, document_label(document, number, where)
        raise ConfigError(f"{where}: document {number}: kind",
                          "is required (a document without kind needs machine or cluster)")
    api_version = document.get("apiVersion")
    definition = schema.kinds.get((str(api_version), str(kind)))
    if definition is None:
        raise ConfigError(
            f"{where}: document {number}: kind",
            f"is not a document kind (with its apiVersion) that Talos "
            f"v{schema.line[0]}.{schema.line[1]} knows")
    return definition, document_label(document, number, where)


# Document names are identifiers (link names, volume names): shown only when they look so.
_PRINTABLE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,63}$")


def _problems(
    document: dict[str, Any], definition: str, line: tuple[int, int],
) -> Iterator[tuple[str, str | None]]:
    """(path, problem) of every schema error, problem None for a field to warn about."""
    errors = sorted(_validator(line, definition).iter_errors(document),
                    key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            for key in _unexpected_keys(error.instance, error.schema):
                here = [*path, key]
                if definition == V1ALPHA1 and _generic(here) in UNDOCUMENTED_FIELDS[line]:
                    yield _dotted(here), None
                else:
                    yield _dotted(here), f"is not a field Talos v{line[0]}.{line[1]} knows"
            continue
        if _decoder_accepts(error, path, definition):
            continue
        yield _dotted(path), _describe(error)


def _unexpected_keys(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    known = schema.get("properties", {})
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return sorted(str(key) for key in instance
                  if key not in known and not any(p.search(str(key)) for p in patterns))


def _decoder_accepts(error: ValidationError, path: list[str | int], definition: str) -> bool:
    if definition == V1ALPHA1 and path == ["machine", "type"]:
        return error.instance in DECODED_MACHINE_TYPES
    # yaml.v3 decodes any scalar into a Go string field (it takes the scalar's text).
    return (error.validator == "type" and error.validator_value == "string"
            and isinstance(error.instance, int | float | bool))


def _describe(error: ValidationError) -> str:
    """The problem in the schema's words, without the instance value."""
    kind = error.validator
    expected: Any = error.validator_value
    if kind == "type":
        return f"must be of type {expected}"
    if kind == "enum" and all(isinstance(v, str | int) for v in expected):
        return "must be one of " + ", ".join(str(v) for v in expected)
    if kind == "pattern":
        return f"must match the pattern {expected}"
    if kind == "required":
        missing = [p for p in expected if isinstance(error.instance, dict)
                   and p not in error.instance]
        return f"needs the field {', '.join(missing) or 'that the schema requires'}"
    if kind in ("oneOf", "anyOf"):
        return "does not match any of the forms the schema allows"
    return f"does not satisfy the schema's {kind} rule ({expected})"


def _dotted(path: list[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _generic(path: list[str | int]) -> str:
    return re.sub(r"\[\d+\]", "[]", _dotted(path))
