"""Server-side helpers: ownership tags, zone order, user_data, and Machine mapping.

Nova and Neutron tags are single strings (up to 60 characters, no ``,`` or ``/``),
so ownership marks travel as ``key=value`` tags; a value too long for that is
replaced by a digest, which is still deterministic and so still found by a
filtered list. The plain values also go into server metadata (up to 255
characters), where ``list_machines`` reads the request id and labels from.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from talprov.openstack.data import OpenStackData
from talprov.openstack.state import OpenStackState
from talprov.providers.errors import InvalidRequest
from talprov.providers.ownership import (
    INSTALLATION_KEY,
    INSTANCE_KEY,
    REQUEST_KEY,
    labels_from_tags,
    ownership_tags,
)
from talprov.providers.protocol import StepContext
from talprov.providers.types import Machine, MachineRequest, MachineState, Owner
from talprov.talos.join import RenderingPass, user_data_for

MAX_TAG = 60
MAX_USER_DATA = 65535
PORT_KEY = "talprov-port"

STATES = {
    "BUILD": MachineState.PENDING,
    "REBUILD": MachineState.PENDING,
    "ACTIVE": MachineState.RUNNING,
    "REBOOT": MachineState.RUNNING,
    "HARD_REBOOT": MachineState.RUNNING,
    "MIGRATING": MachineState.RUNNING,
    "RESIZE": MachineState.RUNNING,
    "VERIFY_RESIZE": MachineState.RUNNING,
    "SHUTOFF": MachineState.STOPPED,
    "SUSPENDED": MachineState.STOPPED,
    "PAUSED": MachineState.STOPPED,
    "SHELVED": MachineState.STOPPED,
    "SHELVED_OFFLOADED": MachineState.STOPPED,
    "ERROR": MachineState.ERROR,
    "DELETED": MachineState.TERMINATED,
    "SOFT_DELETED": MachineState.TERMINATED,
}


def is_going(server: Any) -> bool:
    """Whether Nova has deleted the server or is deleting it."""
    return str(server.status) in ("DELETED", "SOFT_DELETED") or getattr(
        server, "task_state", None) == "deleting"


def tag(key: str, value: str) -> str:
    """``key=value`` as one Nova/Neutron tag, the value digested when it cannot fit."""
    text = f"{key}={value}"
    if len(text) <= MAX_TAG and "," not in text and "/" not in text:
        return text
    digest = hashlib.sha256(value.encode()).hexdigest()[: MAX_TAG - len(key) - 8]
    return f"{key}=sha256:{digest}"


def owner_tags(owner: Owner) -> list[str]:
    """The tags every server, port and floating IP of ``owner`` carries."""
    return [tag(INSTALLATION_KEY, owner.installation), tag(INSTANCE_KEY, owner.instance)]


def request_tags(owner: Owner, request_id: str) -> list[str]:
    """The tags that find exactly one request's resources."""
    return [*owner_tags(owner), tag(REQUEST_KEY, request_id)]


def tag_query(tags: Iterable[str]) -> str:
    """The value of a ``tags=`` filter (all of them, comma-separated)."""
    return ",".join(tags)


def server_metadata(owner: Owner, request: MachineRequest, extra: Mapping[str, str]) -> dict[
        str, str]:
    """Server metadata: the ownership marks (full values) plus the user's keys.

    Raises ``InvalidRequest`` when a label does not fit Nova's 255-character limit.
    """
    marks = ownership_tags(owner, request)
    for key, value in marks.items():
        if len(key) > 255 or len(value) > 255:
            raise InvalidRequest(f"label {key!r} is too long for server metadata "
                                 "(255 characters)", field="labels")
    return {**extra, **marks}


def zone_order(request_id: str, zones: Sequence[str]) -> list[str | None]:
    """The zones a request tries, in order: a start picked from its id, then the rest.

    Picking the start from the id spreads a machine set over the zones without
    any shared counter; the rotation keeps every zone as a fallback.
    """
    if not zones:
        return [None]
    start = int(hashlib.sha256(request_id.encode()).hexdigest()[:8], 16) % len(zones)
    return [*zones[start:], *zones[:start]]


def render_user_data(request: MachineRequest, rendering: RenderingPass | None = None) -> str:
    """The text the machine receives as user_data (``talos.join.user_data_for``,
    reading each config once per ``rendering``).

    Raises ``InvalidRequest`` (field ``machine_config``) when the config is not
    YAML; the message never quotes the config.
    """
    return user_data_for(request, rendering=rendering)


def user_data_of(request: MachineRequest, rendering: RenderingPass | None = None) -> str:
    """The request's user_data, rendered and encoded as Nova takes it. Raises
    ``InvalidRequest`` (``machine_config``) as the two steps do. Pure."""
    return encode_user_data(render_user_data(request, rendering))


def encode_user_data(text: str) -> str:
    """user_data as Nova takes it (base64). Raises ``InvalidRequest`` when too large."""
    encoded = base64.b64encode(text.encode()).decode()
    if len(encoded) > MAX_USER_DATA:
        raise InvalidRequest(
            f"the machine config is {len(text.encode())} bytes; Nova takes at most "
            f"{MAX_USER_DATA} bytes of base64 user_data", field="machine_config")
    return encoded


def to_machine(server: Any) -> Machine:
    """The talprov view of a Nova server as the SDK gives it (see :func:`machine_of`)."""
    return machine_of({
        "id": server.id, "status": server.status,
        "metadata": getattr(server, "metadata", None),
        "created": getattr(server, "created_at", None),
        "addresses": getattr(server, "addresses", None),
        "fault": getattr(server, "fault", None),
        "OS-EXT-AZ:availability_zone": getattr(server, "availability_zone", None),
        "OS-EXT-STS:task_state": getattr(server, "task_state", None),
    })


def machine_of(item: Mapping[str, Any]) -> Machine:
    """The talprov view of a Nova server found by tag, from the API's JSON."""
    metadata = item.get("metadata") or {}
    status = str(item.get("status"))
    task_state = item.get("OS-EXT-STS:task_state")
    created = None
    if item.get("created"):
        try:
            created = datetime.fromisoformat(str(item["created"]).replace("Z", "+00:00"))
        except ValueError:
            created = None
    extra = {"status": status,
             "availability_zone": str(item.get("OS-EXT-AZ:availability_zone") or "")}
    fault = item.get("fault")
    message = fault.get("message") if isinstance(fault, dict) else None
    if message:
        extra["fault"] = str(message)
    if task_state:
        extra["task_state"] = str(task_state)
    going = status in ("DELETED", "SOFT_DELETED") or task_state == "deleting"
    fixed: list[str] = []
    floating: list[str] = []
    for entries in (item.get("addresses") or {}).values():
        for entry in entries:
            target = floating if entry.get("OS-EXT-IPS:type") == "floating" else fixed
            target.append(str(entry.get("addr")))
    return Machine(
        infra_id=str(item["id"]),
        state=MachineState.TERMINATED if going else STATES.get(status, MachineState.UNKNOWN),
        request_id=metadata.get(REQUEST_KEY),
        # Nova gives libvirt guests the instance uuid as their SMBIOS system UUID.
        machine_uuid=str(item["id"]),
        addresses=(*fixed, *floating),
        labels=labels_from_tags(dict(metadata)),
        created_at=created,
        extra=extra,
    )


def server_body(ctx: StepContext[OpenStackData, OpenStackState], zone: str | None) -> dict[
    str, Any]:
    """The body of Nova's ``POST /servers`` (tags need microversion 2.52)."""
    data = ctx.data
    attrs: dict[str, Any] = {
        "name": ctx.request.id,
        "flavorRef": ctx.state.flavor_id,
        "networks": [{"port": port_id} for port_id in ctx.state.port_ids],
        "user_data": ctx.state.take_user_data() or user_data_of(ctx.request),
        "metadata": server_metadata(ctx.owner, ctx.request, data.metadata),
        "tags": [*request_tags(ctx.owner, ctx.request.id), *data.tags],
    }
    if data.root_volume is not None:
        attrs["block_device_mapping_v2"] = [{
            "boot_index": 0, "uuid": ctx.state.image_id, "source_type": "image",
            "destination_type": "volume", "volume_size": data.root_volume.size,
            "delete_on_termination": data.root_volume.delete_on_termination,
            **({"volume_type": data.root_volume.type} if data.root_volume.type else {}),
        }]
    else:
        attrs["imageRef"] = ctx.state.image_id
    if zone is not None:
        attrs["availability_zone"] = zone
    if data.config_drive:
        attrs["config_drive"] = True
    body: dict[str, Any] = {"server": attrs}
    if ctx.state.server_group_id is not None:
        body["os:scheduler_hints"] = {"group": ctx.state.server_group_id}
    return body


#: The newest compute microversion talprov asks for (Nova 2025.1's newest): every
#: server field it sends or reads has kept its meaning up to it. Tags on create
#: need 2.52, tag filters on lists 2.26.
MAX_COMPUTE_MICROVERSION = "2.100"


def server_microversion(proxy: Any) -> str | None:
    """The compute microversion for talprov's server calls through ``proxy`` (a
    keystoneauth adapter, as the SDK's compute proxy is): the one the cloud's
    configuration pins (``compute_api_version``), else the highest that both Nova
    (its version document, which keystoneauth reads once and caches) and
    :data:`MAX_COMPUTE_MICROVERSION` know; None when Nova names no maximum (no
    microversion is sent then).

    Raises what reading the version document raises, other than a discovery
    failure (then None, as the SDK does). Read-only; idempotent.
    """
    from openstack import utils

    pinned = getattr(proxy, "default_microversion", None)
    if pinned:
        return str(pinned)
    version: str | None = utils.maximum_supported_microversion(proxy, MAX_COMPUTE_MICROVERSION)
    return version
