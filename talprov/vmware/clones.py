"""A clone refused because a VM of the request's name exists already.

The clone step clones under the request id and finds its VM by the instance UUID
it gave the clone. When the answer to ``CloneVM_Task`` is lost after vCenter
started the clone, the step's next attempt looks the VM up by that UUID; vCenter
may not show it there yet while the clone runs, so the step clones again and
vCenter refuses the name (``DuplicateName``). That VM is the request's own: the
step waits for it instead of failing the request. A VM of that name that carries
another instance UUID is someone else's, and the request cannot go on.
"""

from __future__ import annotations

from typing import Any

from talprov.providers.errors import InvalidRequest
from talprov.providers.protocol import StepContext
from talprov.providers.types import Retry
from talprov.vmware.client import ServiceInstance, VSphereClient
from talprov.vmware.data import VSphereMachineData
from talprov.vmware.inventory import Inventory
from talprov.vmware.state import VSphereState


def name_taken(client: VSphereClient, inventory: Inventory,
               ctx: StepContext[VSphereMachineData, VSphereState], poll: float) -> Retry:
    """What the clone step does when vCenter refused its VM's name.

    Returns a Retry (the next attempt finds the VM by its instance UUID) when the
    VM of that name is this request's, or is not there any more, or its UUID
    cannot be read yet (a clone in progress). Raises ``InvalidRequest`` naming
    the VM when it carries another instance UUID; ``Transient``/``AuthError``
    from the read. Read-only.
    """
    name = ctx.request.id

    def uuid_of_named(si: ServiceInstance) -> str | None:
        folder = inventory.placement(si, ctx.data).folder
        vm: Any = si.content.searchIndex.FindChild(folder, name)
        if vm is None:
            return None
        config = vm.config
        return None if config is None else str(config.instanceUuid or "") or None

    uuid = client.read(f"look up VM named {name}", uuid_of_named)
    if uuid is not None and uuid != ctx.state.instance_uuid:
        raise InvalidRequest(
            f"clone VM {name}: a VM named {name} exists in the target folder and is not "
            "this request's (another instance UUID); rename or remove it, or use another "
            "folder")
    ctx.event(f"a VM named {name} exists already: this request's clone whose answer was "
              "lost; waiting for it to show")
    return Retry(poll, f"waiting for the clone of VM {name} that is already running")
