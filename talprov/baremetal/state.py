"""The bare-metal provider's typed step state (persisted by the runner after every step)."""

from __future__ import annotations

from talprov.providers.protocol import ProviderState


class BareMetalState(ProviderState):
    """What the steps did for one request.

    ``infra_id`` is the inventory machine name, ``machine_uuid`` its SMBIOS UUID.
    Times are runtime-clock seconds.
    """

    machine: str | None = None
    pxe_set: bool = False
    powered_at: float | None = None
    wipe_powered_at: float | None = None
    wipe_pxe_set: bool = False
    powered_off: bool = False
