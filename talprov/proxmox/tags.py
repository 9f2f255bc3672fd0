"""talprov's ownership marks as PVE tags.

``/cluster/resources`` returns a VM's tags but not its description, so the marks
that ``list_machines`` filters on must be tags. PVE tags allow only
``[a-z0-9_+.-]`` (and are lower-cased by PVE), so each mark is ``<key>+<value>``
with the ownership key from ``talprov.providers.ownership``; a value that is not
already tag-safe is replaced by a digest of it (stable, comparable, one-way).
The full, readable marks also go into the VM's notes (description).

The request mark is the exception: it carries the request id itself, always
(request ids are tag-safe by their pattern), so that a listing names every VM's
request by the id the reconciler knows, one starting with ``h-`` too. Versions
before digested an id starting with ``h-`` (as any such value); such a VM is
still its request's: :func:`request_mark_values` matches both, and
:func:`listed_request_id` reads the id back from the VM's name, which talprov
sets to the request id and whose digest the mark then is.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping

from talprov.providers.ownership import (
    LABEL_PREFIX,
    REQUEST_KEY,
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


def request_mark_value(request_id: str) -> str:
    """The value of the request mark a VM made now carries: the id itself. Pure.

    Unlike :func:`tag_value`, an id starting with ``h-`` is kept: the listing must
    name the request by its id. (An id that is not tag-safe cannot pass request
    validation; it is digested all the same rather than written broken.)
    """
    return request_id if _SAFE_VALUE.match(request_id) else tag_value(request_id)


def request_mark_values(request_id: str) -> frozenset[str]:
    """Every request-mark value that marks a VM as ``request_id``'s: the id, and the
    digest versions before this one wrote for an id starting with ``h-``. Pure."""
    return frozenset({request_mark_value(request_id), tag_value(request_id)})


def listed_request_id(marks: Mapping[str, str], name: str | None) -> str | None:
    """The request id a VM with tag ``marks`` and ``name`` belongs to, for listings.

    The request mark, unless it is the digest of the VM's name: then the VM was
    made by a version that digested ids starting with ``h-`` and named it after
    its request, and the name is the id. (A raw id equal to the digest of another
    id would need a 96-bit collision.) A VM renamed since reads as its digest: no
    request has that id, so the reconciler sees the request's VM missing, as it
    did before this version. Pure.
    """
    mark = marks.get(REQUEST_KEY)
    if mark is not None and name and name != mark and tag_value(name) == mark:
        return name
    return mark


def encode_tags(marks: Mapping[str, str]) -> list[str]:
    """Ownership marks (``ownership_tags`` output plus the UUID) as PVE tags."""
    tags = []
    for key, value in marks.items():
        if not _SAFE_VALUE.match(key.lower()) or SEPARATOR in key:
            continue  # a label key PVE cannot carry; it stays in the notes only
        encoded = request_mark_value(value) if key == REQUEST_KEY else tag_value(value)
        tags.append(f"{key.lower()}{SEPARATOR}{encoded}")
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
