"""In-memory state of the fake cloud, and the faults a test can ask it to inject.

The records keep what the real services keep, in the units the APIs use (RAM in
MiB, disk in GiB, user_data as the base64 text the compute API takes).
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol


def new_id() -> str:
    return str(uuid.uuid4())


def new_hex_id() -> str:
    """Keystone-style ids: 32 hex digits, no dashes."""
    return uuid.uuid4().hex


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Flavor:
    id: str
    name: str
    vcpus: int
    ram: int
    disk: int
    ephemeral: int = 0
    swap: int = 0
    is_public: bool = True
    description: str | None = None
    extra_specs: dict[str, str] = field(default_factory=dict)


@dataclass
class Server:
    id: str
    name: str
    project_id: str
    user_id: str
    flavor: Flavor
    image_id: str | None
    availability_zone: str
    user_data: str | None
    metadata: dict[str, str]
    tags: list[str]
    port_ids: list[str]
    networks_to_allocate: list[str]
    security_groups: list[str]
    config_drive: bool
    key_name: str | None
    server_group_id: str | None
    block_devices: list[dict[str, Any]]
    requested_az: str | None
    status: str = "BUILD"
    vm_state: str = "building"
    task_state: str | None = "scheduling"
    power_state: int = 0
    host: str | None = None
    fault: dict[str, Any] | None = None
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)
    launched_at: str | None = None
    # What the build will end in, decided at create time and shown on a later poll.
    outcome: str = "active"
    #: Polls left before a requested delete completes; None while not deleting.
    deleting_polls: int | None = None
    fault_message: str = ""
    polls_until_done: int = 0
    nova_port_ids: list[str] = field(default_factory=list)


@dataclass
class ServerGroup:
    id: str
    name: str
    policy: str
    rules: dict[str, Any]
    project_id: str
    user_id: str
    members: list[str] = field(default_factory=list)


@dataclass
class Image:
    id: str
    name: str | None
    owner: str
    disk_format: str | None = None
    container_format: str | None = None
    visibility: str = "shared"
    protected: bool = False
    min_disk: int = 0
    min_ram: int = 0
    status: str = "queued"
    tags: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    data: bytes | None = None
    size: int | None = None
    virtual_size: int | None = None
    checksum: str | None = None
    os_hash_value: str | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass
class Subnet:
    id: str
    name: str
    network_id: str
    cidr: str
    project_id: str
    ip_version: int = 4
    enable_dhcp: bool = True
    allocated: set[str] = field(default_factory=set)

    @property
    def gateway_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.cidr).hosts()))

    def allocate(self, wanted: str | None = None) -> str | None:
        """A free address (``wanted`` if given and free), or None when exhausted."""
        net = ipaddress.ip_network(self.cidr)
        if wanted is not None:
            if ipaddress.ip_address(wanted) not in net or wanted in self.allocated:
                return None
            self.allocated.add(wanted)
            return wanted
        hosts = net.hosts()
        next(hosts)  # the gateway
        for host in hosts:
            text = str(host)
            if text not in self.allocated:
                self.allocated.add(text)
                return text
        return None


@dataclass
class Network:
    id: str
    name: str
    project_id: str
    external: bool = False
    shared: bool = False
    mtu: int = 1450
    subnet_ids: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)


@dataclass
class Port:
    id: str
    name: str
    network_id: str
    project_id: str
    mac_address: str
    fixed_ips: list[dict[str, str]]
    security_groups: list[str]
    description: str = ""
    device_id: str = ""
    device_owner: str = ""
    status: str = "DOWN"
    binding_host: str = ""
    admin_state_up: bool = True
    tags: list[str] = field(default_factory=list)
    revision_number: int = 1
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass
class FloatingIp:
    id: str
    floating_network_id: str
    floating_ip_address: str
    project_id: str
    port_id: str | None = None
    fixed_ip_address: str | None = None
    description: str = ""
    status: str = "DOWN"
    tags: list[str] = field(default_factory=list)
    revision_number: int = 1
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass
class SecurityGroup:
    id: str
    name: str
    project_id: str
    description: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass
class Token:
    id: str
    user_id: str
    project_id: str
    methods: list[str]
    expires_at: str
    issued_at: str
    app_cred_id: str | None = None


@dataclass
class User:
    id: str
    name: str
    password: str
    domain_id: str = "default"


@dataclass
class AppCredential:
    id: str
    name: str
    secret: str
    user_id: str
    project_id: str


@dataclass
class RouteFault:
    """Answer the next ``remaining`` calls matching method+path with ``status``."""

    method: str
    path: re.Pattern[str]
    status: int
    remaining: int
    retry_after: float | None = None


@dataclass
class Faults:
    """Failures the test process asks for; consumed as calls arrive."""

    #: Per zone, the fault messages of the next boots that fail there.
    build_failures: dict[str, list[str]] = field(default_factory=dict)
    build_polls: int = 0
    delete_polls: int = 0
    routes: list[RouteFault] = field(default_factory=list)


# Quota names are the ones each API reports: Nova's ``instances``/``cores``/``ram``/
# ``server_groups`` and Neutron's ``port``/``floatingip``/``network``. None = unlimited.
DEFAULT_QUOTAS: dict[str, int | None] = {
    "instances": None,
    "cores": None,
    "ram": None,
    "server_groups": None,
    "port": None,
    "floatingip": None,
    "network": None,
}


@dataclass
class CloudState:
    """Everything the fake cloud knows. Guarded by the server's single lock."""

    region: str = "RegionOne"
    domain_id: str = "default"
    project_id: str = field(default_factory=new_hex_id)
    project_name: str = "talos"
    availability_zones: dict[str, list[str]] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    app_credentials: dict[str, AppCredential] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    flavors: dict[str, Flavor] = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)
    server_groups: dict[str, ServerGroup] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    subnets: dict[str, Subnet] = field(default_factory=dict)
    ports: dict[str, Port] = field(default_factory=dict)
    floating_ips: dict[str, FloatingIp] = field(default_factory=dict)
    security_groups: dict[str, SecurityGroup] = field(default_factory=dict)
    quotas: dict[str, int | None] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    faults: Faults = field(default_factory=Faults)
    #: False: a Neutron before the tag-creation extensions (tags only by PUT .../tags).
    tag_on_create: bool = True
    mac_counter: int = 0

    def next_mac(self) -> str:
        self.mac_counter += 1
        n = self.mac_counter
        return f"fa:16:3e:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"


class StateHolder(Protocol):
    """What each service API needs of the cloud: its current state (which ``reset``
    may replace, so the APIs read it through the cloud every time)."""

    state: CloudState


class ServiceApi:
    """What every service's routes share: the cloud whose state they read and change."""

    def __init__(self, cloud: StateHolder) -> None:
        self.cloud = cloud

    @property
    def state(self) -> CloudState:
        return self.cloud.state
