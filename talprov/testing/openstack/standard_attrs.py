"""Neutron's standard attributes that every resource shares: tags and revisions.

Tags (extension ``standard-attr-tag``): strings of at most 60 characters without
a comma; list calls filter on them with ``tags`` (all of), ``tags-any``,
``not-tags`` and ``not-tags-any``, each a comma-separated list.

Revisions (``standard-attr-revisions``, ``revision-if-match``): every change to
a resource, its tags included, and a port being bound by Nova or a floating IP
being associated, raises its ``revision_number`` by one. A PUT or DELETE that
carries ``If-Match: revision_number=N`` is refused with 412 Precondition Failed
unless the resource is at revision N, so a client changes or deletes exactly the
version it read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from talprov.testing.openstack.state import now_iso
from talprov.testing.openstack.wire import HttpError, Request

MAX_TAG_LENGTH = 60
REVISION_PREFIX = "revision_number="
EXTENSIONS = [
    ("standard-attr-revisions", "This extension will display the revision number of "
     "neutron resources."),
    ("revision-if-match", "Extension indicating that If-Match based on revision_number "
     "is supported."),
]


def neutron_error(status: int, kind: str, message: str) -> HttpError:
    """An error in Neutron's body shape, ``{"NeutronError": {type, message, detail}}``."""
    return HttpError(status, {"NeutronError": {"type": kind, "message": message, "detail": ""}})


def tag_filter(query: dict[str, list[str]], tags: Iterable[str]) -> bool:
    """Whether ``tags`` pass the documented ``tags``/``tags-any``/``not-tags*`` filters."""
    have = set(tags)

    def wanted(name: str) -> list[set[str]]:
        return [set(filter(None, v.split(","))) for v in query.get(name, [])]

    return (
        all(group <= have for group in wanted("tags"))
        and all(group & have for group in wanted("tags-any"))
        and not any(group <= have for group in wanted("not-tags"))
        and not any(group & have for group in wanted("not-tags-any"))
    )


def check_tag(tag: str) -> None:
    if not tag or len(tag) > MAX_TAG_LENGTH or "," in tag:
        raise neutron_error(400, "InvalidInput", f"Invalid input for operation: '{tag}' is "
                            f"not a valid tag.")


def bump(obj: Any) -> None:
    """Record one change of ``obj`` (only ports and floating IPs count revisions here)."""
    if hasattr(obj, "revision_number"):
        obj.revision_number += 1
    if hasattr(obj, "updated_at"):
        obj.updated_at = now_iso()


def check_if_match(req: Request, obj: Any) -> None:
    """Raise 412 when the request's ``If-Match`` names a revision other than ``obj``'s."""
    for raw in req.header("if-match").split(","):
        item = raw.strip()
        if not item.startswith(REVISION_PREFIX):
            continue
        try:
            expected = int(item[len(REVISION_PREFIX):])
        except ValueError:
            raise neutron_error(400, "HTTPBadRequest",
                                f"Invalid If-Match header value: {item}") from None
        current = getattr(obj, "revision_number", 1)
        if current != expected:
            raise neutron_error(412, "HTTPPreconditionFailed",
                                f"Constrained to {expected}, but current revision is {current}")
