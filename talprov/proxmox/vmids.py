"""VMIDs this process is creating VMs under: handed out without collisions, known
while the create runs.

``/cluster/nextid`` answers the lowest free id, the same one to every caller
until a create takes it; creators asking side by side would collide on it and
pay a failed create each. So a batch asks once and counts up from there, past
ids the listing shows and ids this process is still creating under. And while a
create runs its VM is listed without tags: knowing which of those untagged VMs
are this process's creates for *other* requests lets ``ensure-vm`` wait only
for creates that could be the request's own (from before a crash).

A reservation ends when its create is seen to end, when the request's deletion
has nothing left to wait for, or, for a create nobody comes back to (its request
failed or moved to another worker), when it is older than the book's ``ttl``:
the longest a create is waited for. An id forgotten too early is safe: the
listing shows the VM under its create lock, so the id is not handed out again,
and ensure-vm only waits for an untagged create it can no longer rule out.
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
    ``clock`` gives the seconds ``ttl`` is measured in.
    """

    def __init__(self, clock: Callable[[], float], ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.clock = clock
        self.ttl = ttl
        #: vmid -> (request id, when it was handed out)
        self._creating: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        """Forget reservations older than ``ttl`` (their creates were abandoned).
        Called with the lock held."""
        for vmid in [v for v, (_, at) in self._creating.items() if now - at > self.ttl]:
            del self._creating[vmid]

    def reserve(self, request_id: str, first_free: Callable[[], int],
                listed: Collection[int]) -> int:
        """An id for ``request_id``'s create: from ``first_free()`` (the batch's one
        ``/cluster/nextid``) up, past ``listed`` ids and ids being created here."""
        with self._lock:
            vmid = first_free()
            now = self.clock()
            self._expire(now)
            while vmid in listed or vmid in self._creating:
                vmid += 1
            self._creating[vmid] = (request_id, now)
            return vmid

    def hold(self, vmid: int, request_id: str) -> None:
        """``vmid``'s create for ``request_id`` was seen running: keep (or, after a
        restart, put back) its reservation for another ``ttl``. Idempotent."""
        with self._lock:
            self._creating[vmid] = (request_id, self.clock())

    def release(self, vmid: int | None) -> None:
        """The create under ``vmid`` ended (or never started): forget the id. Idempotent."""
        with self._lock:
            if vmid is not None:
                self._creating.pop(vmid, None)

    def release_request(self, request_id: str) -> None:
        """Forget every id handed out for ``request_id`` (its VM was found, or its
        deletion has no create left to wait for). Idempotent."""
        with self._lock:
            for vmid in [v for v, (r, _) in self._creating.items() if r == request_id]:
                del self._creating[vmid]

    def creating_for_other(self, vmid: int, request_id: str) -> bool:
        """True when this process is creating ``vmid`` for another request (and
        handed the id out less than ``ttl`` ago)."""
        with self._lock:
            self._expire(self.clock())
            held = self._creating.get(vmid)
        return held is not None and held[0] != request_id

    def reserved(self) -> dict[int, str]:
        """Every id reserved now, with its request (expired ones left out)."""
        with self._lock:
            self._expire(self.clock())
            return {vmid: request for vmid, (request, _) in self._creating.items()}


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
