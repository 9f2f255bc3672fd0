"""Secret references (``${env:NAME}``, ``${file:PATH}``) and redaction.

Values read through a reference are remembered so that log records and CLI output
can be scrubbed of them; the reference text itself is what errors show.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from talprov.errors import ConfigError, read_user_file

_REF = re.compile(r"\$\{(env|file):([^}]+)\}")
_OPENING = re.compile(r"\$\{")
MASK = "**********"
# Very short values (a region, "true") would mangle output if masked everywhere and
# are not worth hiding; secrets are longer than this.
_MIN_REDACT_LEN = 6

_lock = threading.Lock()
_known: set[str] = set()
#: The key of every keyed_digest of this process, never stored or shown.
_DIGEST_KEY = os.urandom(32)


def keyed_digest(text: str) -> bytes:
    """A digest of ``text`` to key an in-memory cache of what a secret leads to,
    instead of the secret itself: BLAKE2b keyed with a per-process random key,
    so that a digest seen elsewhere (a dump, a log) offers no offline check of a
    guessed secret (a weak password, a known config). Equal only within this
    process. Pure for a given process; raises nothing."""
    return hashlib.blake2b(text.encode(), key=_DIGEST_KEY, digest_size=32).digest()


def register_secret(value: str) -> None:
    """Remember ``value`` so that :func:`redact` masks it from now on."""
    if len(value) >= _MIN_REDACT_LEN:
        with _lock:
            _known.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by a mask."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    return text


def require_reference(value: str, *, where: str) -> str:
    """``value`` when it is exactly one ``${env:NAME}`` or ``${file:PATH}`` reference.

    For settings the docs promise are never stored in clear text (a BMC
    password in the bare-metal inventory). Raises ``ConfigError`` naming
    ``where``, never quoting ``value``. Does not resolve it.
    """
    if _REF.fullmatch(value.strip()) is None:
        raise ConfigError(where, "give a secret reference such as '${env:BMC_PASSWORD}' or "
                                 "'${file:/run/secrets/bmc}', not the secret itself "
                                 "(it would be stored in clear text)")
    return value.strip()


def references_in(value: str) -> list[str]:
    """The ``${env:…}``/``${file:…}`` references written in ``value``, as written
    (names of variables and files, never their values). Pure."""
    return [match.group(0) for match in _REF.finditer(value)]


def has_reference(value: Any) -> bool:
    """Whether ``value`` is a string holding a ``${env:…}`` or ``${file:…}`` reference."""
    if isinstance(value, str):
        return _REF.search(value) is not None
    if isinstance(value, Mapping):
        return any(has_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(has_reference(v) for v in value)
    return False


def resolve_refs(value: str, *, where: str, base_dir: Path | None = None) -> str:
    """Replace secret references in ``value``; register what they resolve to.

    Raises ``ConfigError`` naming ``where`` and the reference (never its value)
    when a variable is unset or a file unreadable, and when a ``${`` starts no
    reference (``${envv:X}``, ``${env:X``): used as it is, that text would be
    sent as the secret.
    """
    _refuse_malformed(value, where)

    def substitute(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2).strip()
        if kind == "env":
            resolved = os.environ.get(name)
            if resolved is None:
                raise ConfigError(where, f"environment variable {name} is not set")
        else:
            path = Path(os.path.expanduser(name))
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            resolved = read_user_file(path, where).strip()
        register_secret(resolved)
        return resolved

    return _REF.sub(substitute, value)


def _refuse_malformed(value: str, where: str) -> None:
    for start in (m.start() for m in _OPENING.finditer(value)):
        if _REF.match(value, start) is None:
            raise ConfigError(where, "'${' starts no secret reference here; write "
                                     "${env:NAME} or ${file:PATH}")


def check_references(node: Any, *, where: str) -> None:
    """Refuse a malformed reference (``${envv:X}``, ``${env:X``) anywhere in a parsed
    YAML tree without resolving anything, so that it is reported as what it is and
    not as whatever the field would then fail as (a URL without a scheme).

    Raises ``ConfigError`` naming ``where`` and the field. Pure.
    """
    if isinstance(node, str):
        _refuse_malformed(node, where)
    elif isinstance(node, Mapping):
        for key, value in node.items():
            check_references(value, where=f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_references(value, where=f"{where}[{index}]")


def resolve_tree(node: Any, *, where: str, base_dir: Path | None = None) -> Any:
    """Resolve references in every string of a parsed YAML tree."""
    if isinstance(node, str):
        return resolve_refs(node, where=where, base_dir=base_dir)
    if isinstance(node, Mapping):
        return {
            k: resolve_tree(v, where=f"{where}.{k}", base_dir=base_dir) for k, v in node.items()
        }
    if isinstance(node, list):
        return [
            resolve_tree(v, where=f"{where}[{i}]", base_dir=base_dir) for i, v in enumerate(node)
        ]
    return node


class RedactingFilter(logging.Filter):
    """A logging filter that masks registered secrets in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
