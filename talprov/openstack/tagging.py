"""Tags on the Neutron resources talprov creates, on any Neutron.

talprov finds its ports and floating IPs by tag, so it tags them when it makes
them. A Neutron with the ``tag-creation`` extension (ports also with
``tag-ports-during-bulk-creation``) takes ``tags`` in the create body; one that
lists only ``standard-attr-tag`` answers such a create with 400 "Unrecognized
attribute(s) 'tags'". There the resource is created untagged and then tagged
with ``PUT /v2.0/{resources}/{id}/tags``. The extension list is read once per
provider instance.

Between those two calls a worker can die, or the tag call can fail: the next
attempt of the step first adopts an untagged resource of the request (found by
the name or description talprov gave it), and a tag call that fails for good
deletes what was just created, or names it in the error when that fails too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from talprov.openstack.client import OpenStackClient
from talprov.providers.errors import ProviderError

#: Neutron extension: every standard-attribute resource takes ``tags`` on create.
TAG_CREATION = "tag-creation"
#: Neutron extension (older): ports take ``tags`` on create.
PORT_TAG_ON_CREATE = "tag-ports-during-bulk-creation"


class TaggingFailed(ProviderError):
    """A resource was made but could not be tagged; the message says what is left."""

    permanent = True


class NeutronTags:
    """What this Neutron can do with tags, learnt once; thread-safe."""

    def __init__(self, client: OpenStackClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._aliases: frozenset[str] | None = None

    def aliases(self) -> frozenset[str]:
        """The network extension aliases, listed on first use and then remembered.
        Raises what the listing raises (``Transient``, ``AuthError``)."""
        with self._lock:
            if self._aliases is None:
                found = self._client.list_json("list network extensions", "network",
                                               "/extensions", "extensions")
                self._aliases = frozenset(str(e.get("alias")) for e in found)
            return self._aliases

    def on_create(self, kind: str) -> bool:
        """Whether a create of ``kind`` (``"port"``, ``"floating IP"``) may carry tags."""
        aliases = self.aliases()
        if kind == "port" and PORT_TAG_ON_CREATE in aliases:
            return True
        return TAG_CREATION in aliases

    def create(
        self,
        kind: str,
        tags: list[str],
        create: Callable[[dict[str, Any]], Any],
        release: Callable[[Any], object],
        event: Callable[[str], None],
    ) -> Any:
        """``create(extra)`` made with ``tags``: in the create body when this Neutron
        takes them, else tagged right after.

        ``create`` is called once (it is not idempotent); the tag call is retried
        while transient (it replaces the whole list). When tagging fails for good,
        ``release`` deletes the new resource and :class:`TaggingFailed` says so;
        if that delete fails too, the error names the resource left behind.
        Transient errors of the tag call propagate: the step's next attempt adopts
        the untagged resource (see :meth:`adopt`).
        """
        if self.on_create(kind):
            return self._client.write(f"create {kind}", lambda: create({"tags": tags}))
        made = self._client.write(f"create {kind}", lambda: create({}))
        try:
            self.tag(kind, made, tags)
        except ProviderError as exc:
            if not exc.permanent:
                raise
            raise self._released(kind, made, exc, release, event) from None
        return made

    def tag(self, kind: str, resource: Any, tags: list[str]) -> None:
        """Replace ``resource``'s tags with ``tags``. Idempotent."""
        self._client.read(f"tag {kind} {resource.id}",
                          lambda: self._client.network.set_tags(resource, tags))

    def adopt_untagged(self, kind: str, lister: Callable[..., Any], tags: list[str],
                       **query: Any) -> Any | None:
        """Where this Neutron cannot tag on create: the untagged resource ``lister(**query)``
        finds (by the name or description talprov gives it), tagged now; else None."""
        if self.on_create(kind):
            return None
        return self.adopt(kind, self._client.list(f"list {kind}s", lister, **query), tags)

    def adopt(self, kind: str, candidates: list[Any], tags: list[str]) -> Any | None:
        """The first untagged resource of ``candidates`` (found by the name or
        description talprov gives them), tagged now; ``None`` when there is none.
        A tagged candidate belongs to someone else's tags and is left alone."""
        for resource in candidates:
            if not list(getattr(resource, "tags", None) or []):
                self.tag(kind, resource, tags)
                return resource
        return None

    def _released(self, kind: str, made: Any, cause: ProviderError,
                  release: Callable[[Any], object],
                  event: Callable[[str], None]) -> TaggingFailed:
        try:
            release(made)
        except ProviderError as exc:
            event(f"could not tag {kind} {made.id} ({cause.message}) nor delete it "
                  f"({exc.message}); it is left behind untagged")
            return TaggingFailed(f"{kind} {made.id} could not be tagged ({cause.message}) "
                                 f"and is left behind untagged: delete it by hand")
        event(f"could not tag {kind} {made.id} ({cause.message}); deleted it again")
        return TaggingFailed(f"{kind} {made.id} could not be tagged ({cause.message}); "
                             "it was deleted again, nothing is left of this attempt")
