"""Which request each instance of a launch belongs to: packed member lists.

How an instance is tied to its request, crash-safely, even when up to 1,000 are
launched by one call, without any per-instance call after the launch:

* Every instance carries, from the moment RunInstances creates it, the ownership
  tags and the call's member list:
  the request ids, sorted, front-coded (:func:`pack_members`) and cut into
  values of at most 256 characters under ``talprov-members-00``,
  ``talprov-members-01``, … (EC2 allows 50 tags per resource; the members get
  what the other tags leave, see :func:`member_capacity`).
* EC2 numbers the instances of one call 0..k-1 (``AmiLaunchIndex``); instance
  *i* belongs to member *i*. The batch uses MinCount = MaxCount = k, so EC2
  launches all k or none.
* A call with one member carries ``talprov-request`` and ``Name`` instead of a
  member list. Batch members get no per-instance tag at all: their request is
  always derived from the member list and the launch index, so a crash right
  after RunInstances leaves nothing to repair, and ONE DescribeInstances listing
  maps every instance to its request.
* Instances launched by older versions carry one ``talprov-member-<id>`` key per
  member; they are still recognised. Older versions also tagged the call itself
  (``talprov-batch``, its ClientToken); nothing reads that tag: EC2 records the
  ClientToken and the reservation on every instance of the call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from talprov.providers.ownership import REQUEST_KEY

#: One tag key per batch member: how versions before packed member lists tagged.
LEGACY_MEMBER_PREFIX = "talprov-member-"
#: Keys of the packed member list: ``talprov-members-00``, ``-01``, …
MEMBERS_PREFIX = "talprov-members-"
#: EC2's limits: tags per resource, characters per tag value.
MAX_TAGS = 50
TAG_VALUE_LIMIT = 256
# Front coding: each entry starts with one character saying how many leading
# characters it shares with the previous id (0..61); request ids never hold ".".
_PREFIX_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ENTRY_SEPARATOR = "."


def _shared_prefix(previous: str, current: str) -> int:
    shared = 0
    for a, b in zip(previous, current, strict=False):
        if a != b:
            break
        shared += 1
    return min(shared, len(_PREFIX_DIGITS) - 1)


def _entry_cost(previous: str | None, current: str) -> int:
    """Characters ``current`` adds to a packed list after ``previous`` (None: first)."""
    if previous is None:
        return 1 + len(current)
    return 2 + len(current) - _shared_prefix(previous, current)


def pack_members(request_ids: Sequence[str]) -> str:
    """``request_ids`` (sorted, distinct) front-coded into one string.

    ``w-001, w-002`` becomes ``0w-001.42``: ids of one machine set cost a few
    characters each. Pure; :func:`unpack_members` is its inverse.
    """
    entries: list[str] = []
    previous = ""
    for rid in request_ids:
        shared = _shared_prefix(previous, rid)
        entries.append(_PREFIX_DIGITS[shared] + rid[shared:])
        previous = rid
    return _ENTRY_SEPARATOR.join(entries)


def unpack_members(text: str) -> list[str] | None:
    """The ids :func:`pack_members` packed into ``text``; None when it is malformed."""
    out: list[str] = []
    previous = ""
    for entry in text.split(_ENTRY_SEPARATOR) if text else []:
        shared = _PREFIX_DIGITS.find(entry[:1]) if entry else -1
        if shared < 0 or shared > len(previous) or len(entry) < 2:
            return None
        previous = previous[:shared] + entry[1:]
        out.append(previous)
    return out


def member_capacity(other_tags: int) -> int:
    """Characters of packed member list an instance with ``other_tags`` more tags can carry."""
    return max(0, MAX_TAGS - other_tags) * TAG_VALUE_LIMIT


def chunk_members(request_ids: Sequence[str], *, limit: int, capacity: int) -> list[list[str]]:
    """``request_ids`` (sorted) cut into launches of at most ``limit`` members
    whose packed list fits ``capacity`` characters. A lone member always makes
    a launch (it is tagged by request instead). Pure, deterministic.
    """
    chunks: list[list[str]] = []
    current: list[str] = []
    used = 0
    for rid in request_ids:
        cost = _entry_cost(current[-1] if current else None, rid)
        if current and (len(current) >= limit or used + cost > capacity):
            chunks.append(current)
            current = []
            cost = _entry_cost(None, rid)
        current.append(rid)
        used = (used if len(current) > 1 else 0) + cost
    if current:
        chunks.append(current)
    return chunks


def member_tags(request_ids: Sequence[str]) -> list[dict[str, str]]:
    """The ``talprov-members-NN`` tags carrying ``request_ids`` (sorted)."""
    text = pack_members(request_ids)
    pieces = [text[i:i + TAG_VALUE_LIMIT] for i in range(0, len(text), TAG_VALUE_LIMIT)]
    return [{"Key": f"{MEMBERS_PREFIX}{n:02d}", "Value": piece} for n, piece in enumerate(pieces)]


def members_of(tags: Mapping[str, str]) -> list[str]:
    """The member list an instance carries (packed, else legacy keys); [] when none."""
    return list(_members(tags))


def _members(tags: Mapping[str, str]) -> Sequence[str]:
    # Keys are zero-padded, so their text order is their number order.
    keys = sorted(k for k in tags if k.startswith(MEMBERS_PREFIX))
    if keys:
        return _unpacked("".join(tags[k] for k in keys))
    return sorted(k[len(LEGACY_MEMBER_PREFIX):] for k in tags
                  if k.startswith(LEGACY_MEMBER_PREFIX))


@lru_cache(maxsize=256)
def _unpacked(text: str) -> tuple[str, ...]:
    """:func:`unpack_members` of ``text`` (() when malformed), remembered: every
    instance of a call carries the call's whole list, so a listing meets each
    list once per instance (up to 1,000 times)."""
    return tuple(unpack_members(text) or ())


def request_of(tags: Mapping[str, str], launch_index: int) -> str | None:
    """The request an instance belongs to: its request tag, else its launch slot."""
    explicit = tags.get(REQUEST_KEY)
    if explicit:
        return explicit
    members = _members(tags)
    if 0 <= launch_index < len(members):
        return members[launch_index]
    return None
