"""Read a cluster spec (a YAML stream of Cluster / MachineClass / ControlPlane / Workers).

Every error is a :class:`~talprov.errors.ConfigError` whose text names
the file, the document, the field and the problem, e.g.
``cluster.yaml: document 3 (Workers "workers"): machineClass.size: must be >= 0``.
Errors never quote values: a spec carries join tokens and machine configs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from talprov.errors import (
    ConfigError,
    did_you_mean,
    file_label,
    read_named_file,
    read_user_file,
    telling_error,
    validation_message,
    yaml_error,
)
from talprov.providers.types import JoinSpec
from talprov.scaler.configtext import SAFE_LOADER
from talprov.scaler.models import (
    CONTROL_PLANE_SET,
    ClusterDoc,
    ClusterSpec,
    ConfigRef,
    MachineClass,
    MachineSetSpec,
    Role,
    SetDoc,
)
from talprov.scaler.speclines import at_line, line_of
from talprov.talos.patchcheck import patched_and_checked

_KINDS: dict[str, type[BaseModel]] = {
    "Cluster": ClusterDoc,
    "MachineClass": MachineClass,
    "ControlPlane": SetDoc,
    "Workers": SetDoc,
}
_REF = re.compile(r"\$\{(env|file):([^}]+)\}")
# A request id is "<cluster>-<set>-<5 chars>" and must fit a 63-char DNS label.
_ID_SUFFIX_LEN = 6
_ID_MAX = 63


def load_spec(
    text: str,
    where: str,
    base_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
) -> ClusterSpec:
    """Parse and resolve a cluster spec.

    ``where`` names the source in messages (usually the file name); config files
    and ``${file:…}`` references are read relative to ``base_dir``; ``${env:…}``
    references come from ``env`` (default: the process environment).

    Raises ConfigError for any problem in the spec or a file it references.
    Pure apart from reading those files; calling it twice gives equal specs.
    """
    environ = os.environ if env is None else env
    documents = _read_stream(text, where)
    cluster: tuple[int, ClusterDoc] | None = None
    classes: dict[str, tuple[int, MachineClass]] = {}
    set_docs: dict[str, tuple[int, SetDoc]] = {}
    for number, raw in documents:
        doc = _validate(raw, where, number, text)
        label = _doc_label(where, number, raw)
        if isinstance(doc, ClusterDoc):
            if cluster is not None:
                first = cluster[0]
                raise ConfigError(label, at_line(f"a second Cluster document (see document "
                                                 f"{first})", line_of(text, number, ())))
            cluster = (number, doc)
        elif isinstance(doc, MachineClass):
            if doc.name in classes:
                raise ConfigError(
                    f"{label}: name",
                    at_line(f"machine class {doc.name!r} is already defined in document "
                            f"{classes[doc.name][0]}", line_of(text, number, ("name",))),
                )
            classes[doc.name] = (number, doc)
        elif isinstance(doc, SetDoc):
            set_name = doc.name or CONTROL_PLANE_SET
            if set_name in set_docs:
                first = set_docs[set_name][0]
                what = (
                    "a second ControlPlane" if doc.kind == "ControlPlane" else "duplicate set name"
                )
                raise ConfigError(f"{label}: name", at_line(
                    f"{what} (see document {first})", line_of(text, number, ("name",))))
            set_docs[set_name] = (number, doc)
    if cluster is None:
        raise ConfigError(where, "no Cluster document (kind: Cluster)")
    cluster_doc = cluster[1]
    cluster_label = _doc_label(where, cluster[0], None, "Cluster", cluster_doc.name)
    join = _resolve_join(cluster_doc.join, cluster_label, base_dir, environ)
    sets: dict[str, MachineSetSpec] = {}
    # The control plane goes first so plans and status list it first.
    ordered = sorted(set_docs.items(), key=lambda item: (item[0] != CONTROL_PLANE_SET, item[1][0]))
    for set_name, (number, set_doc) in ordered:
        label = _doc_label(where, number, None, set_doc.kind, set_doc.name)
        if set_doc.machine_class.name not in classes:
            known = ", ".join(sorted(classes)) or "none"
            raise ConfigError(
                f"{label}: machineClass.name",
                at_line(f"unknown machine class {set_doc.machine_class.name!r} (known: "
                        f"{known})" + did_you_mean(set_doc.machine_class.name, sorted(classes)),
                        line_of(text, number, ("machineClass", "name"))),
            )
        if set_doc.config is None and join is None:
            # No default config is inherited (from the Cluster or the class): such a
            # machine would boot with nothing, in maintenance mode, and never be a node.
            raise ConfigError(
                f"{label}: config",
                at_line("is required (a Talos machine config: {file: ...} or {inline: ...}), "
                        "unless the Cluster document has a join, whose machines get their "
                        "config from Omni", line_of(text, number, ())))
        longest = len(cluster_doc.name) + 1 + len(set_name) + _ID_SUFFIX_LEN
        if longest > _ID_MAX:
            raise ConfigError(
                f"{label}: name",
                at_line("cluster name + set name are too long for request ids "
                        f"({longest} > {_ID_MAX} chars)", line_of(text, number, ("name",))),
            )
        sets[set_name] = MachineSetSpec(
            name=set_name,
            role=Role.CONTROLPLANE if set_doc.kind == "ControlPlane" else Role.WORKER,
            machine_class=set_doc.machine_class.name,
            size=set_doc.machine_class.size,
            machine_config=_machine_config(set_doc, label, base_dir, cluster_doc.talos.version),
            labels=dict(set_doc.labels),
            update=set_doc.update,
            delete_order=set_doc.delete_order,
            provision_timeout=set_doc.provision_timeout,
            remediation=set_doc.remediation,
            autoscaling=set_doc.autoscaling,
        )
    spec = ClusterSpec(
        name=cluster_doc.name,
        talos_version=cluster_doc.talos.version,
        join=join,
        machine_classes={name: doc for name, (_, doc) in classes.items()},
        sets=sets,
    )
    spec.remember_documents(
        {name: _doc_label(where, number, None, "MachineClass", name)
         for name, (number, _) in classes.items()},
        {name: _doc_label(where, number, None, doc.kind, doc.name)
         for name, (number, doc) in set_docs.items()})
    return spec


def load_spec_file(path: Path, *, env: Mapping[str, str] | None = None) -> ClusterSpec:
    """Read ``path`` and :func:`load_spec` it. Raises ConfigError (also when unreadable)."""
    text = read_named_file(path, "the spec")
    return load_spec(text, file_label(path), path.parent, env=env)


def _read_stream(text: str, where: str) -> list[tuple[int, Any]]:
    try:
        loaded = list(yaml.load_all(text, Loader=SAFE_LOADER))
    except yaml.YAMLError as exc:
        raise yaml_error(exc, where) from None
    # Empty documents (a trailing ---) are skipped but keep their position number.
    documents = [(number, doc) for number, doc in enumerate(loaded, start=1) if doc is not None]
    if not documents:
        raise ConfigError(where, "empty spec: no documents")
    return documents


def _validate(raw: Any, where: str, number: int, text: str) -> BaseModel:
    label = _doc_label(where, number, raw)
    if not isinstance(raw, dict):
        raise ConfigError(label, at_line("must be a mapping", line_of(text, number, ())))
    kind = raw.get("kind")
    model = _KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ConfigError(f"{label}: kind", at_line(
            f"must be one of {', '.join(_KINDS)}"
            + (did_you_mean(kind, list(_KINDS)) if isinstance(kind, str) else ""),
            line_of(text, number, ("kind",))))
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        field, message = validation_message(exc, label, ": ", model=model)
        loc = telling_error(exc.errors()).get("loc", ())
        raise ConfigError(field, at_line(message, line_of(text, number, loc))) from None


def _doc_label(
    where: str, number: int, raw: Any, kind: str | None = None, name: str | None = None
) -> str:
    if raw is not None and isinstance(raw, dict):
        kind = raw.get("kind") if isinstance(raw.get("kind"), str) else None
        name = raw.get("name") if isinstance(raw.get("name"), str) else None
    if kind == "ControlPlane" and name is None:
        name = CONTROL_PLANE_SET
    if kind is None:
        return f"{where}: document {number}"
    if name is None:
        return f"{where}: document {number} ({kind})"
    return f'{where}: document {number} ({kind} "{name}")'


def _read_relative(base_dir: Path, name: str, where: str) -> str:
    path = Path(name) if Path(name).is_absolute() else base_dir / name
    # The path as looked for, so `sub/controlplane.yaml` is not reported as
    # `controlplane.yaml` when the spec sits in another directory.
    return read_user_file(path, where)


def _config_text(ref: ConfigRef, base_dir: Path, where: str) -> str:
    if ref.inline is not None:
        return ref.inline.get_secret_value()
    assert ref.file is not None  # guaranteed by ConfigRef's validator
    return _read_relative(base_dir, ref.file, f"{where}.file")


def _machine_config(set_doc: SetDoc, label: str, base_dir: Path, version: str) -> SecretStr:
    base = ""
    if set_doc.config is not None:
        base = _config_text(set_doc.config, base_dir, f"{label}: config")
    patches = [
        (f"{label}: patches[{index}]" + (f" ({ref.file})" if ref.file else ""),
         _config_text(ref, base_dir, f"{label}: patches[{index}]"))
        for index, ref in enumerate(set_doc.patches)
    ]
    # The same checks as a request file's config: Talos's schema and decoder rules, a
    # problem blamed on the patch that brought it in. Without patches the text is
    # passed through byte for byte, so the template hash does not move when talprov's
    # YAML dumper does; with them, Talos's strategic merge (talprov.talos.machineconfig).
    return SecretStr(patched_and_checked(base, f"{label}: config", patches, version))


def _resolve_join(
    join: JoinSpec | None, label: str, base_dir: Path, env: Mapping[str, str]
) -> JoinSpec | None:
    if join is None:
        return None
    raw = join.api_url.get_secret_value()

    def substitute(match: re.Match[str]) -> str:
        source, key = match.group(1), match.group(2).strip()
        if source == "env":
            if key not in env:
                raise ConfigError(
                    f"{label}: join.api_url", f"environment variable {key} is not set"
                )
            return env[key]
        return _read_relative(base_dir, key, f"{label}: join.api_url").strip()

    return join.model_copy(update={"api_url": SecretStr(_REF.sub(substitute, raw))})
