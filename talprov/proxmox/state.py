"""The Proxmox provider's typed step state (persisted by the runner after every step)."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from talprov.providers.protocol import ProviderState


class ProxmoxState(ProviderState):
    """What the steps learned and created for one request.

    ``infra_id`` is the VMID as text; ``machine_uuid`` the VM's SMBIOS UUID. Task
    fields hold the UPID of a PVE task a step started and is waiting for, so that
    a restart waits for the same task instead of starting another.
    """

    node: str | None = None
    storage: str | None = None
    iso_storage: str | None = None
    iso_volume: str | None = None
    iso_task: str | None = None
    seed_volume: str | None = None
    vmid: int | None = None
    create_task: str | None = None
    start_task: str | None = None
    stop_task: str | None = None
    stop_node: str | None = None
    stop_started_at: float | None = None
    hard_stop: bool = False
    delete_task: str | None = None
    delete_node: str | None = None
    seed_task: str | None = None
    seed_node: str | None = None
    #: The deletion removed the seed ISO (it is not looked for again).
    seed_removed: bool = False

    @model_validator(mode="before")
    @classmethod
    def _drop_retired_fields(cls, data: Any) -> Any:
        # States stored before ``iso_uploaded`` (never read) was removed still carry
        # it; dropping it keeps their requests at their step instead of restarting.
        if isinstance(data, dict) and "iso_uploaded" in data:
            return {k: v for k, v in data.items() if k != "iso_uploaded"}
        return data
