"""Each machine's hostname, set in its config the way its Talos version honours.

Platforms deliver names unreliably: Talos's NoCloud platform (Proxmox) reads
``local-hostname`` from meta-data only together with a network-config, so a VM
on DHCP boots nameless. talprov therefore names every machine (after its
request id) in the machine config itself, as Talos's own standard patch
``stdpatches.WithStaticHostname`` does:

* from v1.12 on (``HostnameConfig`` exists; the v1alpha1 schema no longer has
  ``machine.network.hostname``): a ``HostnameConfig`` document with
  ``auto: off`` and ``hostname``, merged into the one the config already has
  (``talosctl gen config`` writes ``auto: stable``) or appended;
* before v1.12: ``machine.network.hostname`` in the v1alpha1 document.

Left alone: a config that already names the machine (either field), a config
without a v1alpha1 document (empty, or join-only documents that Omni completes
later), and from v1.12 one whose v1alpha1 document asks for
``machine.features.stableHostname`` (Talos refuses a HostnameConfig beside it).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from enum import Enum
from typing import Any

from talprov.secrets import keyed_digest
from talprov.talos import goyaml
from talprov.talos.machineconfig import apply_patches, load_documents

HOSTNAME_KIND = "HostnameConfig"
#: The first Talos minor line with the HostnameConfig document (siderolabs/talos v1.12.0,
#: pkg/machinery/config/types/network/hostname.go).
HOSTNAME_CONFIG_SINCE = (1, 12)
_LINE = re.compile(r"^v(\d+)\.(\d+)\.")


def has_hostname_config(talos_version: str) -> bool:
    """Whether this Talos version knows the ``HostnameConfig`` document."""
    found = _LINE.match(talos_version)
    return found is not None and (int(found[1]), int(found[2])) >= HOSTNAME_CONFIG_SINCE


def hostname_document(name: str) -> str:
    """The ``HostnameConfig`` document naming the machine ``name`` (Talos's field order)."""
    fields = [("apiVersion", "v1alpha1"), ("kind", HOSTNAME_KIND), ("auto", "off"),
              ("hostname", name)]
    return "\n".join(goyaml.mapping_lines(fields, 0)) + "\n"


def _dig(document: dict[str, Any], *path: str) -> Any:
    value: Any = document
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def with_hostname(config: str, name: str, talos_version: str, where: str = "machine_config") -> str:
    """``config`` naming the machine ``name``, unless it names it already (see the module).

    Appending leaves the config's own bytes as they are; merging into an
    existing document or into v1alpha1 re-writes the YAML (same content,
    comments dropped). Raises ``ConfigError`` naming ``where`` for malformed
    YAML. Pure and idempotent.
    """
    how = _how_to_name(config, has_hostname_config(talos_version), where)
    if how is _Naming.AS_IS:
        return config
    if how is _Naming.V1ALPHA1:
        patch = goyaml.mapping_lines([("machine", {"network": {"hostname": name}})], 0)
        return apply_patches(config, ["\n".join(patch) + "\n"], where)
    if how is _Naming.MERGE:
        return apply_patches(config, [hostname_document(name)], where)
    return without_trailing_separators(config) + "---\n" + hostname_document(name)


class _Naming(Enum):
    AS_IS = "as is"
    V1ALPHA1 = "machine.network.hostname"
    MERGE = "merged into the HostnameConfig"
    APPEND = "a HostnameConfig appended"


#: How many configs' namings :func:`_how_to_name` remembers.
NAMINGS_KEPT = 16
_namings: OrderedDict[tuple[bytes, bool], _Naming] = OrderedDict()
_namings_lock = threading.Lock()


def _how_to_name(config: str, hostname_config: bool, where: str) -> _Naming:
    """How :func:`with_hostname` names a machine of ``config``, whatever its name.
    Raises ``ConfigError`` naming ``where`` for malformed YAML (not kept).

    The machines of a set share one config, which differs only in the name: it
    is read once, not once per machine. The last :data:`NAMINGS_KEPT` are kept,
    in memory, by a keyed digest of the config (it holds CA keys and tokens),
    never by its text. Thread-safe.
    """
    key = (keyed_digest(config), hostname_config)
    with _namings_lock:
        found = _namings.get(key)
        if found is not None:
            _namings.move_to_end(key)
            return found
    how = _read_how_to_name(config, hostname_config, where)
    with _namings_lock:
        _namings[key] = how
        while len(_namings) > NAMINGS_KEPT:
            _namings.popitem(last=False)
    return how


def _read_how_to_name(config: str, hostname_config: bool, where: str) -> _Naming:
    documents = load_documents(config, where)
    legacy = next((d for d in documents if "kind" not in d), None)
    if legacy is None:
        return _Naming.AS_IS
    typed = [d for d in documents if d.get("kind") == HOSTNAME_KIND]
    if _dig(legacy, "machine", "network", "hostname") or any(d.get("hostname") for d in typed):
        return _Naming.AS_IS
    if not hostname_config:
        return _Naming.V1ALPHA1
    if _dig(legacy, "machine", "features", "stableHostname") is True:
        return _Naming.AS_IS
    return _Naming.MERGE if typed else _Naming.APPEND


def without_trailing_separators(text: str) -> str:
    """The config with trailing blank lines and document markers removed, ending in a newline."""
    lines = text.rstrip().splitlines()
    while lines and lines[-1].strip() in ("---", "...", ""):
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""
