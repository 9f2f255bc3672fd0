"""vSphere tags on talprov's VMs (``provider_data.tags``) through the vAPI tagging service.

A tag is named ``category:tag`` (split at the first colon) or given by its id
(``urn:vmomi:InventoryServiceTag:...``). Names are resolved to ids with one
listing of categories and of the needed categories' tags, cached per provider
instance; a name missing from the cache triggers at most one fresh listing per
call, so a tag created since is found and a misspelt one costs one listing.

Tags and categories are never created here: a category's cardinality and
associable types are an administrator's policy, a typo would quietly create a
new tag instead of failing, and creating tags needs global privileges that a
provisioning account should not hold. A missing one is ``InvalidRequest``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from talprov.providers.errors import InvalidRequest, NotFound, Transient
from talprov.vmware.errors import TRANSIENT_RETRY_AFTER
from talprov.vmware.vapi import VapiClient

TAG_ID_PREFIX = "urn:vmomi:InventoryServiceTag:"
CATEGORY_PATH = "/com/vmware/cis/tagging/category"
TAG_PATH = "/com/vmware/cis/tagging/tag"
ASSOCIATION_PATH = "/com/vmware/cis/tagging/tag-association"


def split_tag(ref: str) -> tuple[str, str]:
    """(category name, tag name) of ``category:tag``."""
    category, _, tag = ref.partition(":")
    return category, tag


def vm_object(moid: str) -> dict[str, str]:
    """The vAPI dynamic id of a VM (what tag associations point at)."""
    return {"type": "VirtualMachine", "id": moid}


class Tagger:
    """Resolves tag names to ids (cached) and attaches tags to VMs."""

    def __init__(self, vapi: VapiClient) -> None:
        self.vapi = vapi
        self._lock = threading.Lock()
        self._categories: dict[str, str] = {}  # category name -> id
        self._tags: dict[tuple[str, str], str] = {}  # (category id, tag name) -> id
        self._known_ids: set[str] = set()

    def _cached(self, ref: str) -> str | None:
        if ref.startswith(TAG_ID_PREFIX):
            return ref if ref in self._known_ids else None
        category, tag = split_tag(ref)
        category_id = self._categories.get(category)
        return self._tags.get((category_id, tag)) if category_id else None

    def _refresh(self, wanted: Sequence[str]) -> None:
        """One listing: every category's name, and the tags of the categories asked for."""
        category_ids = self.vapi.call("list tag categories", "GET", CATEGORY_PATH) or []
        categories: dict[str, str] = {}
        for category_id in category_ids:
            try:
                info = self.vapi.call("read tag category", "GET",
                                      f"{CATEGORY_PATH}/id:{category_id}")
            except NotFound:
                continue  # deleted while we listed
            categories[str(info["name"])] = str(category_id)
        tags: dict[tuple[str, str], str] = {}
        known: set[str] = set()
        needed = {split_tag(ref)[0] for ref in wanted if not ref.startswith(TAG_ID_PREFIX)}
        for name in sorted(needed & set(categories)):
            category_id = categories[name]
            tag_ids = self.vapi.call("list tags of a category", "POST",
                                     f"{TAG_PATH}/id:{category_id}",
                                     action="list-tags-for-category") or []
            for tag_id in tag_ids:
                try:
                    info = self.vapi.call("read tag", "GET", f"{TAG_PATH}/id:{tag_id}")
                except NotFound:
                    continue
                tags[(category_id, str(info["name"]))] = str(tag_id)
                known.add(str(tag_id))
        for ref in wanted:
            if ref.startswith(TAG_ID_PREFIX) and ref not in known:
                try:
                    self.vapi.call("read tag", "GET", f"{TAG_PATH}/id:{ref}")
                except NotFound:
                    continue
                known.add(ref)
        self._categories = categories
        self._tags.update(tags)
        self._known_ids |= known

    def resolve(self, refs: Sequence[str]) -> list[str]:
        """The tag ids of ``refs`` (``category:tag`` names or tag ids), in order.

        Raises ``InvalidRequest`` naming ``provider_data.tags[i]`` for a category or
        tag that does not exist, ``AuthError``/``Transient`` from vCenter.
        Read-only; idempotent.
        """
        with self._lock:
            if any(self._cached(ref) is None for ref in refs):
                self._refresh(refs)
            found: list[str] = []
            for index, ref in enumerate(refs):
                tag_id = self._cached(ref)
                if tag_id is None:
                    field = f"provider_data.tags[{index}]"
                    if ref.startswith(TAG_ID_PREFIX):
                        raise InvalidRequest(f"no tag with id {ref!r}", field=field)
                    category, tag = split_tag(ref)
                    if category not in self._categories:
                        raise InvalidRequest(f"no tag category {category!r}", field=field)
                    raise InvalidRequest(f"no tag {tag!r} in category {category!r}",
                                         field=field)
                if tag_id not in found:
                    found.append(tag_id)
            return found

    def forget(self) -> None:
        """Drop the cache (a cached tag was deleted out of band)."""
        with self._lock:
            self._categories.clear()
            self._tags.clear()
            self._known_ids.clear()

    def attached(self, moid: str) -> list[str]:
        """The ids of the tags attached to VM ``moid``. Read-only."""
        found = self.vapi.call(f"list tags of VM {moid}", "POST", ASSOCIATION_PATH,
                               action="list-attached-tags", body={"object_id": vm_object(moid)})
        return [str(tag_id) for tag_id in found or ()]

    def attach(self, moid: str, tag_ids: Sequence[str]) -> list[str]:
        """Attach the tags not yet on VM ``moid`` (one call); return those it attached.

        Idempotent: tags already attached are left alone. A tag deleted since it
        was resolved empties the cache and raises ``Transient`` (the next pass
        resolves again and reports a tag that is gone for good as InvalidRequest).
        """
        have = set(self.attached(moid))
        missing = [tag_id for tag_id in tag_ids if tag_id not in have]
        if not missing:
            return []
        what = f"attach tags to VM {moid}"
        try:
            result = self.vapi.call(what, "POST", ASSOCIATION_PATH,
                                    action="attach-multiple-tags-to-object",
                                    body={"object_id": vm_object(moid), "tag_ids": missing})
        except NotFound:
            self.forget()
            raise Transient(f"{what}: a tag disappeared; resolving again",
                            retry_after=TRANSIENT_RETRY_AFTER) from None
        if isinstance(result, dict) and result.get("success") is False:
            self.forget()
            kinds = sorted({str(e.get("id", "?")) for e in result.get("error_messages") or ()
                            if isinstance(e, dict)})
            raise Transient(f"{what}: vCenter refused ({', '.join(kinds) or 'no reason'})",
                            retry_after=TRANSIENT_RETRY_AFTER)
        return missing
