"""The power driver of an inventory machine, from its BMC record."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.inventory import InventoryMachine
from talprov.baremetal.power.base import PowerDriver
from talprov.errors import ConfigError
from talprov.logs import tls_off_warning
from talprov.providers.errors import InstanceUnavailable, InvalidRequest
from talprov.secrets import resolve_refs

PowerFactory = Callable[[InventoryMachine], PowerDriver]
log = logging.getLogger(__name__)


def power_driver(machine: InventoryMachine, config: BareMetalConfig) -> PowerDriver:
    """An IPMI or Redfish driver for ``machine``.

    The password reference (``${env:…}``, ``${file:…}`` or a literal) is resolved
    now and registered for redaction. Raises ``InvalidRequest`` when the machine
    has no usable BMC record, ``InstanceUnavailable`` when its secret cannot be
    resolved (an unset variable: the request waits for the operator, as for an
    unset factory password or missing AWS credentials, instead of failing).
    """
    bmc = machine.bmc
    if not bmc.address:
        raise InvalidRequest(f"machine {machine.name} has no BMC address in the inventory")
    try:
        password = resolve_refs(bmc.password_ref, where=f"inventory machine {machine.name} bmc")
    except ConfigError as exc:
        raise InstanceUnavailable(str(exc)) from None
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


class PowerDrivers:
    """The power drivers of one provider instance, as :func:`power_driver` makes
    them, but one Redfish driver (one client, one session) per BMC and
    credentials, kept until :meth:`close`; the first driver of a BMC without TLS
    verification warns that it is off. Thread-safe. (IPMI drivers keep their
    sessions per process themselves.)"""

    def __init__(self, config: BareMetalConfig) -> None:
        self.config = config
        self._kept: dict[str, PowerDriver] = {}
        self._lock = threading.Lock()

    def __call__(self, machine: InventoryMachine) -> PowerDriver:
        """``machine``'s driver. Raises like :func:`power_driver`."""
        driver = power_driver(machine, self.config)
        key = getattr(driver, "session_key", None)
        if key is None:
            return driver
        with self._lock:
            kept = self._kept.setdefault(key, driver)
        if kept is driver and not machine.bmc.verify_tls \
                and not machine.bmc.address.startswith("http://"):
            # The first use of this BMC (and credentials) by the instance: said
            # once, as an instance's insecure setting is said by its command.
            log.warning(tls_off_warning(f"machine {machine.name}'s BMC {machine.bmc.url()}",
                                        "verify_tls: false (--insecure)"))
        return kept

    def close(self) -> None:
        """Log out of every BMC session held (best effort). Idempotent."""
        with self._lock:
            kept, self._kept = list(self._kept.values()), {}
        for driver in kept:
            close = getattr(driver, "close", None)
            if close is not None:
                close()
