"""Talos machine configuration: load and apply patches (checks: ``configschema``).

A machine config is a multi-document YAML stream: the legacy ``v1alpha1``
document (``version: v1alpha1``, ``machine``, ``cluster``) plus typed documents
(``apiVersion``/``kind``/optional ``name``). It holds cluster CA keys, so nothing
here puts document content into messages: errors name the file, the line and
the field only.

Patches, as ``talosctl`` applies them:

* **strategic merge** (Talos's default): each patch document merges into the
  document with the same ``apiVersion``/``kind``/``name`` (documents without a
  ``kind`` patch the v1alpha1 document) and is appended if there is none. Maps
  merge recursively, scalars are replaced, lists are appended, except
  ``cluster.network.podSubnets``/``serviceSubnets`` and ``cluster.apiServer.auditPolicy``
  (replaced) and lists merged by a key: ``machine.network.interfaces`` by
  ``interface``/``deviceSelector``, their ``vlans`` by ``vlanId``,
  ``cluster.apiServer.admissionControl`` by ``name``,
  ``ExtensionServiceConfig.configFiles`` by ``mountPath``. ``$patch: delete``
  removes a key (``hostname: {$patch: delete}``), the list items matching the
  other fields of the item it sits in, or a whole typed document; deleting below
  a field the config does not have is an error, as in Talos (its decoder cannot
  look the path up). The result is what Talos decodes, so the leading newlines
  of ``cluster.inlineManifests[].contents`` are trimmed as its decoder trims them.
* **RFC 7386 merge patch** (``style=PatchStyle.MERGE``): ``null`` deletes a key,
  anything else replaces it; lists are replaced whole.
"""

from __future__ import annotations

import copy
import re
from enum import StrEnum
from typing import Any

import yaml

from talprov.errors import ConfigError, UniqueKeyLoader, refuse_duplicate_keys, yaml_error

try:
    from yaml import CSafeDumper as _EmitterBase
    from yaml import CSafeLoader as _ParserBase
except ImportError:  # a PyYAML built without libyaml: the same results, slower
    from yaml import SafeDumper as _EmitterBase  # type: ignore[assignment]
    from yaml import SafeLoader as _ParserBase  # type: ignore[assignment]

DELETE = "$patch"
_REPLACED = {
    "cluster.network.podSubnets",
    "cluster.network.serviceSubnets",
    "cluster.apiServer.auditPolicy",
}
_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "machine.network.interfaces": ("interface", "deviceSelector"),
    "machine.network.interfaces.vlans": ("vlanId",),
    "cluster.apiServer.admissionControl": ("name",),
    "ExtensionServiceConfig.configFiles": ("mountPath",),
}


class PatchStyle(StrEnum):
    STRATEGIC = "strategic"
    MERGE = "merge"  # RFC 7386


class _Loader(UniqueKeyLoader):
    """YAML as Talos (Go yaml.v3) reads it, so a patched config keeps its meaning.

    PyYAML follows YAML 1.1: ``yes``/``on`` are booleans, ``12:30`` is a base-60
    number and dates become datetimes. Go reads all of those as strings, so only
    the YAML 1.2 forms of booleans, integers and floats are typed here.
    """


_RETYPED = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag not in _RETYPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+)$"
        r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$|^0x[0-9a-fA-F_]+$|^0o?[0-7_]+$|^0b[01_]+$"),
    list("-+0123456789"),
)


class _FastLoader(_ParserBase):
    """:class:`_Loader`'s rules on libyaml's parser.

    Every machine's config is loaded and written at least once per create (its
    hostname, its patches): for a 7.6 KB control-plane config libyaml takes
    0.8 ms to load it where PyYAML's pure-Python parser takes 6.8 (and 0.6 vs
    4.5 ms to write it). libyaml's error texts differ from PyYAML's, so a stream
    it refuses is read again by :class:`_Loader`, whose message people see.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        refuse_duplicate_keys(node)
        return super().construct_mapping(node, deep)


_FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers


class _Dumper(_EmitterBase):
    """Writes multi-line strings (certificates, manifests) as literal blocks."""


def _represent_str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def load_documents(text: str, where: str) -> list[dict[str, Any]]:
    """Every non-empty document of a multi-document YAML stream, as dicts.

    Raises ``ConfigError`` naming ``where`` and the line for malformed YAML, and
    the document number for a document that is not a mapping. Pure.
    """
    try:
        raw = list(yaml.load_all(text, Loader=_FastLoader))
    except yaml.YAMLError:
        try:
            raw = list(yaml.load_all(text, Loader=_Loader))
        except yaml.YAMLError as exc:
            raise yaml_error(exc, where) from None
    documents = []
    for number, document in enumerate(raw, start=1):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ConfigError(f"{where}: document {number}", "must be a mapping")
        documents.append(document)
    return documents


def dump_documents(documents: list[dict[str, Any]]) -> str:
    """Documents back to one YAML stream, separated by ``---``."""
    return yaml.dump_all(
        documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 30
    )


def _identity(document: dict[str, Any]) -> tuple[str, ...]:
    if "kind" in document:
        return (
            str(document.get("apiVersion")),
            str(document["kind"]),
            str(document.get("name", "")),
        )
    return ("v1alpha1",)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; returns a new value and leaves both inputs alone."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_patches(
    text: str, patches: list[str], where: str, *, style: PatchStyle = PatchStyle.STRATEGIC,
    labels: list[str] | None = None,
) -> str:
    """``text`` with every patch applied in order, as a YAML stream.

    Each patch is YAML text (possibly several documents for strategic patches).
    With no patches the text is returned unchanged. Raises ``ConfigError``
    naming ``where`` or the patch (its entry of ``labels``, else ``where: patch
    N``) for malformed YAML or a patch that cannot apply (deleting the v1alpha1
    document, a non-mapping RFC 7386 patch).
    """
    if not patches:
        return text
    # Only strategic patches trim inline manifests (as they always did here).
    documents = (read_for_patching(text, where) if style is PatchStyle.STRATEGIC
                 else load_documents(text, where))
    for number, patch_text in enumerate(patches, start=1):
        label = labels[number - 1] if labels else f"{where}: patch {number}"
        documents = patched_documents(documents, load_documents(patch_text, label), label,
                                      style=style)
    return dump_documents(documents)


def read_for_patching(text: str, where: str) -> list[dict[str, Any]]:
    """The documents of ``text`` as :func:`patched_documents` takes them: the
    ``cluster.inlineManifests`` contents trimmed as Talos's decoder trims them.
    Raises ``ConfigError`` naming ``where`` for malformed YAML. Pure.
    """
    documents = load_documents(text, where)
    for document in documents:
        _trim_inline_manifests(document)
    return documents


def patched_documents(
    documents: list[dict[str, Any]], patch: list[dict[str, Any]], label: str, *,
    style: PatchStyle = PatchStyle.STRATEGIC,
) -> list[dict[str, Any]]:
    """``documents`` (from :func:`read_for_patching`) with one patch's documents applied.

    Leaves its inputs alone: a document the patch does not touch is the same
    object in the result, so a caller may share the documents between patches.
    Raises ``ConfigError`` naming ``label`` for a patch that cannot apply
    (deleting the v1alpha1 document, a non-mapping RFC 7386 patch). Pure.
    """
    result = documents
    if style is PatchStyle.MERGE:
        if len(patch) != 1:
            raise ConfigError(label, "an RFC 7386 merge patch is exactly one YAML mapping")
        return _merge_document(result, patch[0])
    for patch_document in patch:
        result = _strategic_document(result, patch_document, label)
    # Talos decodes the whole config to merge into it, and its decoder trims these;
    # the documents given were trimmed when read.
    given = {id(document) for document in documents}
    for document in result:
        if id(document) not in given and _identity(document) == ("v1alpha1",):
            _trim_inline_manifests(document)
    return result


class _MissingPath(Exception):
    """A ``$patch: delete`` below a field the config does not have (``path`` names it)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def _find(documents: list[dict[str, Any]], identity: tuple[str, ...]) -> int | None:
    for index, document in enumerate(documents):
        if _identity(document) == identity:
            return index
    return None


def _merge_document(documents: list[dict[str, Any]], patch: dict[str, Any]) -> list[dict[str, Any]]:
    index = _find(documents, _identity(patch))
    result = list(documents)
    if index is None:
        result.append(merge_patch({}, patch))
    else:
        result[index] = merge_patch(documents[index], patch)
    return result


def _strategic_document(
    documents: list[dict[str, Any]], patch: dict[str, Any], label: str
) -> list[dict[str, Any]]:
    identity = _identity(patch)
    index = _find(documents, identity)
    result = list(documents)
    if patch.get(DELETE) == "delete":
        if identity == ("v1alpha1",):
            raise ConfigError(label, "the v1alpha1 document cannot be deleted")
        if index is not None:
            del result[index]
        return result
    prefix = "" if identity == ("v1alpha1",) else identity[1]
    if index is None:
        result.append(_strip_directives(patch))
    else:
        merged = copy.deepcopy(documents[index])
        try:
            _strategic_merge(merged, patch, prefix)
        except _MissingPath as missing:
            raise ConfigError(f"{label}: {missing.path}",
                              "$patch: delete below a field the config does not have") from None
        result[index] = merged
    return result


# Talos's ClusterInlineManifests decoder strips these (not spaces) from each manifest's start.
_MANIFEST_LEADING = "\t\n\v\f\r"


def _trim_inline_manifests(document: dict[str, Any]) -> None:
    cluster = document.get("cluster")
    manifests = cluster.get("inlineManifests") if isinstance(cluster, dict) else None
    for manifest in manifests if isinstance(manifests, list) else []:
        if isinstance(manifest, dict) and isinstance(manifest.get("contents"), str):
            manifest["contents"] = manifest["contents"].lstrip(_MANIFEST_LEADING)


def _delete_below(value: Any, path: str) -> str | None:
    """The path of the first ``$patch: delete`` in ``value`` (at ``path``), if any."""
    if not isinstance(value, dict):
        return None
    if value.get(DELETE) == "delete":
        return path
    for key, inner in value.items():
        found = _delete_below(inner, _join(path, key))
        if found is not None:
            return found
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _strategic_merge(target: dict[str, Any], patch: dict[str, Any], path: str) -> None:
    """Merge ``patch`` into ``target`` in place (Talos strategic merge rules)."""
    for key, value in patch.items():
        if key == DELETE:
            continue
        here = _join(path, key)
        if isinstance(value, dict) and value.get(DELETE) == "delete":
            target.pop(key, None)
            continue
        if value is None:
            continue  # Talos's typed merge leaves a field alone when the patch has no value
        current = target.get(key)
        deleted = _delete_below(value, here) if current is None else None
        if deleted is not None:
            raise _MissingPath(deleted)
        if here in _REPLACED:
            target[key] = _strip_directives(value)
        elif isinstance(value, dict) and isinstance(current, dict):
            _strategic_merge(current, value, here)
        elif isinstance(value, list) and isinstance(current, list):
            target[key] = _merge_list(current, value, here)
        else:
            target[key] = _strip_directives(value)


def _matches(item: Any, selector: dict[str, Any]) -> bool:
    return isinstance(item, dict) and all(item.get(k) == v for k, v in selector.items())


def _merge_list(current: list[Any], patch: list[Any], path: str) -> list[Any]:
    result = list(current)
    keys = _LIST_KEYS.get(path, ())
    for item in patch:
        if isinstance(item, dict) and item.get(DELETE) == "delete":
            selector = {k: v for k, v in item.items() if k != DELETE}
            result = [existing for existing in result if not _matches(existing, selector)]
            continue
        match = None
        if isinstance(item, dict):
            for key in keys:
                if key in item:
                    match = next((e for e in result if _matches(e, {key: item[key]})), None)
                    if match is not None:
                        break
        if match is not None:
            _strategic_merge(match, item, path)
        else:
            result.append(_strip_directives(item))
    return result


def _strip_directives(value: Any) -> Any:
    """A copy of new content without ``$patch`` markers (nothing to delete in it)."""
    if isinstance(value, dict):
        return {
            k: _strip_directives(v)
            for k, v in value.items()
            if k != DELETE and not (isinstance(v, dict) and v.get(DELETE) == "delete")
        }
    if isinstance(value, list):
        return [
            _strip_directives(v)
            for v in value
            if not (isinstance(v, dict) and v.get(DELETE) == "delete")
        ]
    return copy.deepcopy(value)
