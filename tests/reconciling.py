"""What tests of the reconciler over one real provider (on its emulator) share.

A SQLite store, a reconciler over one provider instance, and the readings such
tests make of the requests it drives. The driver tests that run steps directly,
without a store, use tests/driving.py instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from talprov.providers.protocol import Provider
from talprov.providers.types import Stage
from talprov.reconcile.failures import StepPolicy
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store

#: Requests a test's reconciler works on at once.
CONCURRENCY = 4


def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A migrated SQLite store under ``tmp_path``, closed when the generator is
    resumed: a fixture's body (``yield from sqlite_store(tmp_path)``)."""
    opened = Store(f"sqlite:///{tmp_path / 'state.db'}")
    opened.migrate()
    yield opened
    opened.close()


def reconciler_of(store: Store, instance: str, provider: Any,
                  *, max_attempts: int | None = None) -> Reconciler:
    """A reconciler over the one provider instance ``instance``; ``max_attempts``
    bounds each step's attempts (the default policy's otherwise)."""
    # Providers are typed Any: drivers narrow their ClassVar models, which the
    # Provider protocol (invariant ClassVars) does not accept.
    policy = StepPolicy(max_attempts=max_attempts) if max_attempts is not None else None
    handle = ProviderHandle(cast(Provider, provider), CONCURRENCY)
    return Reconciler(store, {instance: handle}, provider.runtime, policy=policy)


def provisioned(store: Store, *ids: str) -> Callable[[], bool]:
    """A condition for ``Reconciler.run_until``: every request of ``ids`` is provisioned."""
    def done() -> bool:
        records = [store.get_request(rid) for rid in ids]
        return all(r is not None and r.stage == Stage.PROVISIONED for r in records)
    return done


def recorded(store: Store, rid: str) -> str:
    """The infrastructure id request ``rid``'s record names (asserts it has one)."""
    record = store.get_request(rid)
    assert record is not None
    assert record.infra_id is not None
    return record.infra_id


def events_saying(store: Store, rid: str, words: str) -> list[str]:
    """The messages of request ``rid``'s events that contain ``words``, oldest first."""
    return [event.message for event in store.events(rid) if words in event.message]
