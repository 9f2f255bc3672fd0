"""The vSphere provider's typed step state (persisted by the runner after every step)."""

from __future__ import annotations

from talprov.providers.protocol import ProviderState


class VSphereState(ProviderState):
    """What the steps learned and created for one request.

    ``infra_id`` is the VM's managed object id (``vm-123``); ``machine_uuid`` its
    BIOS (SMBIOS) UUID, which Talos reports as its machine UUID. ``*_task`` fields
    hold the managed object id of a vCenter task a step started, so that the next
    pass (or a restarted process) waits for that task instead of starting another.
    """

    template: str | None = None
    template_moid: str | None = None
    instance_uuid: str | None = None
    clone_task: str | None = None
    vm_moid: str | None = None
    configured: bool = False
    reconfig_task: str | None = None
    power_task: str | None = None
    #: The power-on task succeeded (or the VM was seen on): wait-running reads nothing.
    powered_on: bool = False
    shutdown_started_at: float | None = None
    hard_off: bool = False
    destroy_task: str | None = None
