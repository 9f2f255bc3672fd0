"""talprov's ownership marks as PVE tags.

``/cluster/resources`` returns a VM's tags but not its description, so the marks
that ``list_machines`` filters on must be tags. PVE tags allow only
``[a-z0-9_+.-]`` (and are lower-cased by PVE), so each mark is ``<key>+<value>``
with the ownership key from ``talprov.providers.ownership``; a value that is not
already tag-safe is replaced by a digest of it (stable, comparable, one-way).
The full, readable marks also go into the VM's notes (description).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping

from talprov.providers.ownership import (
    LABEL_PREFIX,
    is_owned,
)
from talprov.providers.types import Owner

UUID_KEY = "talprov-uuid"
SEPARATOR = "+"
_SAFE_VALUE = re.compile(r"^[a-z0-9_.-]+$")
_DIGEST_PREFIX = "h-"


def tag_value(value: str) -> str:
    """``value`` as it can stand in a tag: itself when safe, else ``h-<digest>``."""
    if _SAFE_VALUE.match(value) and not value.startswith(_DIGEST_PREFIX):
        return value
    return _DIGEST_PREFIX + hashlib.sha256(value.encode()).hexdigest()[:24]


def encode_tags(marks: Mapping[str, str]) -> list[str]:
    """Ownership marks (``ownership_tags`` output plus the UUID) as PVE tags."""
    tags = []
    for key, value in marks.items():
        if not _SAFE_VALUE.match(key.lower()) or SEPARATOR in key:
            continue  # a label key PVE cannot carry; it stays in the notes only
        tags.append(f"{key.lower()}{SEPARATOR}{tag_value(value)}")
    return tags


def decode_tags(tags: str | Iterable[str] | None) -> dict[str, str]:
    """The marks in a VM's ``tags`` (PVE's ``a;b;c`` string or a list)."""
    if tags is None:
        return {}
    items = re.split(r"[;, ]+", tags) if isinstance(tags, str) else list(tags)
    marks: dict[str, str] = {}
    for tag in items:
        key, sep, value = tag.partition(SEPARATOR)
        if sep and key.startswith("talprov-"):
            marks[key] = value
    return marks


def owned_by(marks: Mapping[str, str], owner: Owner) -> bool:
    """Whether decoded tag marks belong to ``owner`` (values compared tag-encoded)."""
    encoded = Owner(installation=tag_value(owner.installation), instance=tag_value(owner.instance))
    return is_owned(dict(marks), encoded)


def label_tag_key(label: str) -> str:
    """The tag key that carries request label ``label``."""
    return (LABEL_PREFIX + label).lower()


def notes(marks: Mapping[str, str], labels: Mapping[str, str]) -> str:
    """The VM description: a line for people and the marks as JSON for tools."""
    body = json.dumps({"marks": dict(marks), "labels": dict(labels)}, sort_keys=True)
    return f"Managed by talprov; do not edit the talprov tags.\n\ntalprov: {body}\n"
