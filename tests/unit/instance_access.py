"""The one scenario both the Proxmox and the vSphere tests run: an instance whose
access is refused (a wrong password, a certificate that does not verify) blocks its
requests without failing them, and they go on once a fixed instance takes over."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from talprov.providers.types import MachineRequest, Stage
from talprov.reconcile.reconciler import Reconciler
from talprov.store.store import Store
from talprov.testing import FakeClock


def fails_then_heals(tmp_path: Path, clock: FakeClock,
                     make_request: Callable[..., MachineRequest], *,
                     broken: Callable[[Store], Reconciler], fixed: Callable[[Store], Reconciler],
                     says: str, secret: str) -> None:
    """Run passes of ``broken`` for half an hour (more attempts than a request is
    given), with a second request created once the instance is known bad; each must
    stay provisioning with an error containing ``says`` (and never ``secret``).
    Then ``fixed`` (the operator's corrected settings on the same store) must
    provision both without a retry by hand."""
    store = Store(f"sqlite:///{tmp_path / 'access.db'}")
    store.migrate()
    store.create_request(make_request("early"))
    refused = broken(store)
    for number in range(30):
        refused.run_pass()
        if number == 3:
            store.create_request(make_request("late"))
        clock.sleep(60)
    for record in store.list_requests():
        assert record.stage == Stage.PROVISIONING, (record.id, record.stage, record.error)
        assert says in str(record.error), record.error
        assert secret not in str(record.error)
        assert all(secret not in event.message for event in store.events(record.id))

    def provisioned() -> bool:
        return all(r.stage == Stage.PROVISIONED for r in store.list_requests())

    assert fixed(store).run_until(provisioned, timeout=900), [
        (r.id, r.stage, r.error) for r in store.list_requests()]
