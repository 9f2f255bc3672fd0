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
from collections.abc import Callable
from enum import Enum
from typing import Any

from talprov.secrets import keyed_digest
from talprov.talos import goyaml
from talprov.talos.machineconfig import dump_documents, patched_documents, read_for_patching

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
    return "\n".join(goyaml.mapping_lines(list(_hostname_fields(name).items()), 0)) + "\n"


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
    return ConfigReading(config, where).named(name, talos_version)


class ConfigReading:
    """One machine config, read at most once however many machines it names.

    The machines of a set share one config and differ only in their name: its
    documents are parsed once, each document is written once, and naming a
    machine writes only the document its name goes into (the outputs are the
    bytes :func:`with_hostname` gave before, machine by machine). It holds the
    parsed config (CA keys, tokens): keep it for one pass only, never in a
    module or a cache that outlives the pass. Not thread-safe.
    """

    def __init__(self, config: str, where: str = "machine_config") -> None:
        self.config = config
        self._where = where
        self._documents: list[dict[str, Any]] | None = None
        self._written: dict[int, str] = {}
        self._namings: dict[bool, _Naming] = {}
        self._around_name: tuple[str, str] | tuple[()] | None = None

    def documents(self) -> list[dict[str, Any]]:
        """The config's documents, parsed on first use; shared: do not change them.
        Raises ``ConfigError`` naming ``where`` for malformed YAML (read again next time)."""
        if self._documents is None:
            self._documents = read_for_patching(self.config, self._where)
        return self._documents

    def kinds(self) -> set[tuple[str, str]]:
        """(kind, name) of each document ("" where absent). Raises as :meth:`documents`."""
        return {(str(d.get("kind")), str(d.get("name", ""))) for d in self.documents()}

    def named(self, name: str, talos_version: str) -> str:
        """:func:`with_hostname` of this config. Raises ``ConfigError`` as it does."""
        hostname_config = has_hostname_config(talos_version)
        how = self._namings.get(hostname_config)
        if how is None:
            how = _how_to_name(self.config, hostname_config, self.documents)
            self._namings[hostname_config] = how
        if how is _Naming.AS_IS:
            return self.config
        if how is _Naming.APPEND:
            return without_trailing_separators(self.config) + "---\n" + hostname_document(name)
        if how is _Naming.MERGE:
            return self._write(patched_documents(self.documents(), [_hostname_fields(name)],
                                                 self._where))
        return self._in_v1alpha1(name)

    def _in_v1alpha1(self, name: str) -> str:
        """The config with ``machine.network.hostname: name``: written once with a
        marker for the name, then per machine only the name's YAML goes in its place
        (the name changes no other byte: same keys, in the same order, one line)."""
        if self._around_name is None:
            written = self._write(patched_documents(
                self.documents(), [_legacy_name(_NAME_MARKER)], self._where))
            before, found, after = written.partition(f"hostname: {_NAME_MARKER}\n")
            usable = bool(found) and _NAME_MARKER not in before + after
            self._around_name = (before, after) if usable else ()
        if not self._around_name:  # the config holds the marker itself: patch each time
            return self._write(patched_documents(self.documents(), [_legacy_name(name)],
                                                 self._where))
        before, after = self._around_name
        return before + dump_documents([{"hostname": name}]) + after

    def _write(self, documents: list[dict[str, Any]]) -> str:
        """The documents as one YAML stream, each of the config's own written once."""
        own = {id(document) for document in self.documents()}
        texts = []
        for document in documents:
            if id(document) not in own:
                texts.append(dump_documents([document]))
                continue
            if id(document) not in self._written:
                self._written[id(document)] = dump_documents([document])
            texts.append(self._written[id(document)])
        # yaml.dump_all separates documents so: the same bytes as one dump of them all.
        return "---\n".join(texts)


#: Stands for the name while the v1alpha1 document is written once (YAML writes it plain).
_NAME_MARKER = "TalprovNameMarker"


def _legacy_name(name: str) -> dict[str, Any]:
    return {"machine": {"network": {"hostname": name}}}


def _hostname_fields(name: str) -> dict[str, str]:
    return {"apiVersion": "v1alpha1", "kind": HOSTNAME_KIND, "auto": "off", "hostname": name}


class _Naming(Enum):
    AS_IS = "as is"
    V1ALPHA1 = "machine.network.hostname"
    MERGE = "merged into the HostnameConfig"
    APPEND = "a HostnameConfig appended"


#: How many configs' namings :func:`_how_to_name` remembers.
NAMINGS_KEPT = 16
_namings: OrderedDict[tuple[bytes, bool], _Naming] = OrderedDict()
_namings_lock = threading.Lock()


def _how_to_name(config: str, hostname_config: bool,
                 documents: Callable[[], list[dict[str, Any]]]) -> _Naming:
    """How :func:`with_hostname` names a machine of ``config``, whatever its name;
    ``documents`` gives the config's documents when it must be read. Raises what
    ``documents`` raises (``ConfigError`` for malformed YAML; not kept).

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
    how = _read_how_to_name(documents(), hostname_config)
    with _namings_lock:
        _namings[key] = how
        while len(_namings) > NAMINGS_KEPT:
            _namings.popitem(last=False)
    return how


def _read_how_to_name(documents: list[dict[str, Any]], hostname_config: bool) -> _Naming:
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
