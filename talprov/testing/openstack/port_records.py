"""Port records as both Nova and Neutron change them: create (with addresses
allocated from the network's subnets), bind to a server, unbind, delete.

Neutron's API creates and deletes ports for its callers; Nova makes ports for
``networks: [{uuid}]`` itself and binds and unbinds every port of a server, so
these live apart from either API's routes.
"""

from __future__ import annotations

import ipaddress

from talprov.testing.openstack.standard_attrs import bump, neutron_error
from talprov.testing.openstack.state import CloudState, Network, Port, Server, new_id
from talprov.testing.openstack.wire import HttpError


def over_quota(resource: str) -> HttpError:
    return neutron_error(409, "OverQuota", f"Quota exceeded for resources: ['{resource}'].")


def bind_port(state: CloudState, port: Port, server: Server) -> None:
    """Nova plugging ``port`` into ``server`` once it is built on a host."""
    port.device_id = server.id
    port.device_owner = f"compute:{server.availability_zone}"
    port.binding_host = server.host or ""
    port.status = "ACTIVE"
    bump(port)


def unbind_port(port: Port) -> None:
    port.device_id = ""
    port.device_owner = ""
    port.binding_host = ""
    port.status = "DOWN"
    bump(port)


def create_port_record(
    state: CloudState,
    network_id: str,
    *,
    name: str = "",
    fixed_ips: list[dict[str, str]] | None = None,
    security_groups: list[str] | None = None,
    tags: list[str] | None = None,
    description: str = "",
    device_id: str = "",
    device_owner: str = "",
) -> Port:
    """A new port with addresses allocated; raises 409 on quota or exhausted subnets."""
    limit = state.quotas.get("port")
    if limit is not None and len(state.ports) >= limit:
        raise over_quota("port")
    network = state.networks.get(network_id)
    if network is None:
        raise neutron_error(404, "NetworkNotFound", f"Network {network_id} could not be found.")
    allocated: list[dict[str, str]] = []
    requests = fixed_ips if fixed_ips else [{"subnet_id": s} for s in network.subnet_ids[:1]]
    for wanted in requests:  # checked before any address is taken, as Neutron does
        _check_address(state, network, wanted)
    for wanted in requests:
        subnet_id = wanted.get("subnet_id") or _subnet_for_ip(state, network, wanted)
        subnet = state.subnets.get(subnet_id or "")
        if subnet is None or subnet.network_id != network_id:
            raise neutron_error(400, "InvalidInput",
                                f"Invalid input for operation: subnet {subnet_id} is not on "
                                f"network {network_id}.")
        address = subnet.allocate(wanted.get("ip_address"))
        if address is None:
            for done in allocated:
                state.subnets[done["subnet_id"]].allocated.discard(done["ip_address"])
            if wanted.get("ip_address"):
                raise neutron_error(409, "IpAddressAlreadyAllocated",
                                    f"IP address {wanted['ip_address']} already allocated in "
                                    f"subnet {subnet.id}")
            raise neutron_error(409, "IpAddressGenerationFailure",
                                f"No more IP addresses available on network {network_id}.")
        allocated.append({"subnet_id": subnet.id, "ip_address": address})
    default_sg = [g.id for g in state.security_groups.values() if g.name == "default"]
    port = Port(
        id=new_id(),
        name=name,
        network_id=network_id,
        project_id=state.project_id,
        mac_address=state.next_mac(),
        fixed_ips=allocated,
        security_groups=list(security_groups if security_groups is not None else default_sg),
        tags=list(tags or []),
        description=description,
        device_id=device_id,
        device_owner=device_owner,
    )
    state.ports[port.id] = port
    return port


def _check_address(state: CloudState, network: Network, wanted: dict[str, str]) -> None:
    """Neutron's 400s (neutron_lib InvalidIpForSubnet/InvalidIpForNetwork) for an
    address outside the subnet asked for, or outside every subnet of the network."""
    address = wanted.get("ip_address")
    if not address:
        return
    subnet = state.subnets.get(wanted.get("subnet_id") or "")
    if subnet is not None and ipaddress.ip_address(address) not in ipaddress.ip_network(
            subnet.cidr):
        raise neutron_error(400, "InvalidIpForSubnet", f"IP address {address} is not a "
                            "valid IP for the specified subnet.")
    if not wanted.get("subnet_id") and _subnet_for_ip(state, network, wanted) is None:
        raise neutron_error(400, "InvalidIpForNetwork", f"IP address {address} is not a "
                            "valid IP for any of the subnets on the specified network.")


def _subnet_for_ip(state: CloudState, network: Network, wanted: dict[str, str]) -> str | None:
    address = wanted.get("ip_address")
    for subnet_id in network.subnet_ids:
        if address and ipaddress.ip_address(address) in ipaddress.ip_network(
            state.subnets[subnet_id].cidr
        ):
            return subnet_id
    return None


def delete_port_record(state: CloudState, port: Port) -> None:
    for item in port.fixed_ips:
        subnet = state.subnets.get(item["subnet_id"])
        if subnet is not None:
            subnet.allocated.discard(item["ip_address"])
    for fip in state.floating_ips.values():
        if fip.port_id == port.id:
            fip.port_id = fip.fixed_ip_address = None
            fip.status = "DOWN"
            bump(fip)
    del state.ports[port.id]
