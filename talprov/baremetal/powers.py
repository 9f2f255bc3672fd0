"""The power driver of an inventory machine, from its BMC record."""

from __future__ import annotations

from collections.abc import Callable

from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.inventory import InventoryMachine
from talprov.baremetal.power.base import PowerDriver
from talprov.errors import ConfigError
from talprov.providers.errors import InvalidRequest
from talprov.secrets import resolve_refs

PowerFactory = Callable[[InventoryMachine], PowerDriver]


def power_driver(machine: InventoryMachine, config: BareMetalConfig) -> PowerDriver:
    """An IPMI or Redfish driver for ``machine``.

    The password reference (``${env:…}``, ``${file:…}`` or a literal) is resolved
    now and registered for redaction. Raises ``InvalidRequest`` when the machine
    has no usable BMC record or its secret cannot be resolved.
    """
    bmc = machine.bmc
    if not bmc.address:
        raise InvalidRequest(f"machine {machine.name} has no BMC address in the inventory")
    try:
        password = resolve_refs(bmc.password_ref, where=f"inventory machine {machine.name} bmc")
    except ConfigError as exc:
        raise InvalidRequest(str(exc)) from None
    if bmc.kind == "ipmi":
        from talprov.baremetal.power.ipmi import IpmiPower

        return IpmiPower(bmc.address, bmc.username, password, port=bmc.port,
                         min_interval=config.bmc_min_interval, attempts=config.bmc_attempts)
    if bmc.kind == "redfish":
        from talprov.baremetal.power.redfish import RedfishPower

        return RedfishPower(bmc.address, bmc.username, password, port=bmc.port,
                            verify=bmc.verify_tls, min_interval=config.bmc_min_interval,
                            attempts=config.bmc_attempts)
    raise InvalidRequest(f"machine {machine.name}: unknown BMC kind {bmc.kind!r}")
