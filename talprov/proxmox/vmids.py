"""VMIDs this process is creating VMs under: handed out without collisions, known
while the create runs.

``/cluster/nextid`` answers the lowest free id, the same one to every caller
until a create takes it; creators asking side by side would collide on it and
pay a failed create each. So a batch asks once and counts up from there, past
ids the listing shows and ids this process is still creating under. And while a
create runs its VM is listed without tags: knowing which of those untagged VMs
are this process's creates for *other* requests lets ``ensure-vm`` wait only
for creates that could be the request's own (from before a crash).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Generic, TypeVar

T = TypeVar("T")


class VmidBook:
    """Ids handed out by this process whose create has not been seen to end.

    Thread-safe. Lost with the process, which is the safe direction: a restarted
    process treats every untagged create in flight as possibly its own.
    """

    def __init__(self) -> None:
        self._creating: dict[int, str] = {}
        self._lock = threading.Lock()

    def reserve(self, request_id: str, first_free: Callable[[], int],
                listed: Collection[int]) -> int:
        """An id for ``request_id``'s create: from ``first_free()`` (the batch's one
        ``/cluster/nextid``) up, past ``listed`` ids and ids being created here."""
        with self._lock:
            vmid = first_free()
            while vmid in listed or vmid in self._creating:
                vmid += 1
            self._creating[vmid] = request_id
            return vmid

    def release(self, vmid: int | None) -> None:
        """The create under ``vmid`` ended (or never started): forget the id."""
        with self._lock:
            if vmid is not None:
                self._creating.pop(vmid, None)

    def release_request(self, request_id: str) -> None:
        """Forget every id handed out for ``request_id`` (its VM was found)."""
        with self._lock:
            for vmid in [v for v, r in self._creating.items() if r == request_id]:
                del self._creating[vmid]

    def creating_for_other(self, vmid: int, request_id: str) -> bool:
        """True when this process is creating ``vmid`` for another request."""
        with self._lock:
            owner = self._creating.get(vmid)
        return owner is not None and owner != request_id


class OnceValue(Generic[T]):
    """``fetch()`` called at most once, on first use, by whichever thread comes
    first (a batch's shared ``/cluster/nextid`` or listing)."""

    def __init__(self, fetch: Callable[[], T]) -> None:
        self._fetch = fetch
        self._value: list[T] = []
        self._lock = threading.Lock()

    def __call__(self) -> T:
        with self._lock:
            if not self._value:
                self._value.append(self._fetch())
            return self._value[0]
