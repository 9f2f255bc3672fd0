"""talprov's ownership marks as PVE tags.

``/cluster/resources`` returns a VM's tags but not its description, so the marks
that ``list_machines`` filters on must be tags. PVE tags allow only
``[a-z0-9_+.-]`` (and are lower-cased by PVE), so each mark is ``<key>+<value>``
with the ownership key from ``talprov.providers.ownership``; a value that is
tag-safe is written as itself, one that is not (a label value with upper-case
letters, an empty one) as its digest
(:func:`~talprov.providers.ownership.label_digest`: stable, comparable, one-way),
and it lists as that digest. The full, readable marks also go into the VM's
notes (description).

A label *key* may hold upper case and a ``/`` (Kubernetes' rule), which a tag
cannot: each is written as ``+`` and a tag-safe character (:func:`tag_key`), ``R``
as ``+r`` and ``/`` as ``+_``, and read back as itself, so a listing names a
label by the request's own key and ``Role`` and ``role`` stay two labels. The
mark's value never holds ``+`` (a tag-safe value or a digest), so a tag splits
at its last ``+``. Versions before lower-cased keys and dropped those with
``/``: their ``talprov-label-role`` reads as ``role``, as it always did.

Versions before digested every value starting with ``h-`` too (the digest's own
prefix), request ids and names such as a cluster ``h-lab`` included. VMs they
tagged stay recognised: whatever compares a mark hashes the expected value too
(:func:`tag_values`, :func:`owned_by`; the scaler through
:func:`~talprov.providers.ownership.listed_label_is`), and
:func:`listed_request_id` reads such a VM's request id back from its name,
which talprov sets to the request id and whose digest the mark then is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from talprov.providers.ownership import (
    DIGEST_PREFIX,
    INSTALLATION_KEY,
    INSTANCE_KEY,
    LABEL_PREFIX,
    REQUEST_KEY,
    label_digest,
)
from talprov.providers.types import Owner

UUID_KEY = "talprov-uuid"
SEPARATOR = "+"
_SAFE_VALUE = re.compile(r"^[a-z0-9_.-]+$")
#: What follows ``+`` in a tag key for a character a tag cannot hold (besides an
#: upper-case letter, which is its lower-case letter).
_ESCAPED = {"/": "_"}
_UNESCAPED = {v: k for k, v in _ESCAPED.items()}


def tag_value(value: str) -> str:
    """``value`` as a tag carries it now: itself when tag-safe, else its digest. Pure."""
    return value if _SAFE_VALUE.match(value) else label_digest(value)


def tag_value_before(value: str) -> str:
    """``value`` as versions before this one wrote it: digested also when it starts
    with ``h-``. Pure."""
    if _SAFE_VALUE.match(value) and not value.startswith(DIGEST_PREFIX):
        return value
    return label_digest(value)


def tag_values(value: str) -> frozenset[str]:
    """Every mark value that stands for ``value``: as tagged now and as before. Pure."""
    return frozenset({tag_value(value), tag_value_before(value)})


def request_mark_values(request_id: str) -> frozenset[str]:
    """Every request-mark value that marks a VM as ``request_id``'s. Pure."""
    return tag_values(request_id)


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
    if mark is not None and name and name != mark and label_digest(name) == mark:
        return name
    return mark


def tag_key(key: str) -> str | None:
    """Mark key ``key`` as a tag carries it: an upper-case letter as ``+`` and the
    letter, ``/`` as ``+_``, the rest as itself; None for a key with any other
    character, which no tag can carry (only a label stored before labels were
    checked can have one). :func:`mark_key` reverses it. Pure."""
    out = []
    for char in key:
        if "A" <= char <= "Z":
            out.append(SEPARATOR + char.lower())
        elif char in _ESCAPED:
            out.append(SEPARATOR + _ESCAPED[char])
        elif _SAFE_VALUE.match(char):
            out.append(char)
        else:
            return None
    return "".join(out)


def mark_key(tagged: str) -> str | None:
    """The mark key a tag key written by :func:`tag_key` (or lower-cased by versions
    before it) stands for; None when ``tagged`` has a ``+`` that no key character
    was written as. Pure."""
    out = []
    chars = iter(tagged)
    for char in chars:
        if char != SEPARATOR:
            out.append(char)
            continue
        escaped = next(chars, "")
        if "a" <= escaped <= "z":
            out.append(escaped.upper())
        elif escaped in _UNESCAPED:
            out.append(_UNESCAPED[escaped])
        else:
            return None
    return "".join(out)


def encode_tags(marks: Mapping[str, str]) -> list[str]:
    """Ownership marks (``ownership_tags`` output plus the UUID) as PVE tags. Pure."""
    tags = []
    for key, value in marks.items():
        tagged = tag_key(key)
        if tagged is None:
            continue  # a (stored, unchecked) label key no tag can carry: notes only
        tags.append(f"{tagged}{SEPARATOR}{tag_value(value)}")
    return tags


def decode_tags(tags: str | Iterable[str] | None) -> dict[str, str]:
    """The marks in a VM's ``tags`` (PVE's ``a;b;c`` string or a list), by mark key.
    Pure."""
    if tags is None:
        return {}
    items = re.split(r"[;, ]+", tags) if isinstance(tags, str) else list(tags)
    marks: dict[str, str] = {}
    for tag in items:
        # The value never holds "+" (see tag_value); an escaped key may.
        tagged, sep, value = tag.rpartition(SEPARATOR)
        key = mark_key(tagged) if sep and tagged.startswith("talprov-") else None
        if key is not None:
            marks[key] = value
    return marks


def owned_by(marks: Mapping[str, str], owner: Owner) -> bool:
    """Whether decoded tag marks belong to ``owner``: each value as tagged now or
    before (see :func:`tag_values`). Pure."""
    return (marks.get(INSTALLATION_KEY) in tag_values(owner.installation)
            and marks.get(INSTANCE_KEY) in tag_values(owner.instance))


def label_tag_key(label: str) -> str:
    """The mark key :func:`decode_tags` gives request label ``label``'s tag under.
    Pure."""
    return LABEL_PREFIX + label


def notes(marks: Mapping[str, str], labels: Mapping[str, str]) -> str:
    """The VM description: a line for people and the marks as JSON for tools."""
    body = json.dumps({"marks": dict(marks), "labels": dict(labels)}, sort_keys=True)
    return f"Managed by talprov; do not edit the talprov tags.\n\ntalprov: {body}\n"
