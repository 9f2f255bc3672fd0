"""How a Talos image and a machine's configuration reach a Proxmox node.

The boot image is the Image Factory's ``nocloud-<arch>.iso`` for the request's
schematic and version. The node fetches it itself (``storage/{s}/download-url``)
into the ISO storage under ``<sha256(url)>.iso``, so one download serves every
machine that boots the same image, and a changed URL (another schematic, version
or factory mirror) never reuses a wrong file. When a node cannot reach the factory
the file is uploaded from talprov's local cache instead.

The configuration travels on a NoCloud seed ISO (volume label ``cidata`` with
``user-data``, ``meta-data`` and ``network-config``), uploaded to the ISO storage
and attached as a second CD-ROM. PVE's own cloud-init drive cannot carry
arbitrary user-data without ``cicustom`` snippet files, and PVE's API has no way
to write snippets (its upload takes only ISOs, container templates and imports),
so a seed ISO is the one channel that works through the API alone.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import yaml

from talprov.providers.types import MachineRequest
from talprov.proxmox.data import StaticNetwork

if TYPE_CHECKING:
    from talprov.talos.factory import ImageFactory

IsoUrlResolver = Callable[[MachineRequest], str]

SEED_LABEL = "cidata"
# Everything talprov creates per machine is recognisable by this prefix.
SEED_PREFIX = "talprov-seed-"


def iso_file_name(url: str) -> str:
    """The file name a boot ISO is stored under: ``<sha256(url)>.iso``."""
    return hashlib.sha256(url.encode()).hexdigest() + ".iso"


def factory_iso_url(factory: ImageFactory, request: MachineRequest) -> str:
    """The Image Factory URL of the request's ``nocloud-<arch>.iso``.

    Registers the request's schematic with the factory first (idempotent; the
    factory serves images only for schematics it knows). Raises ``InvalidRequest``
    for a schematic or architecture the factory cannot build, ``AuthError`` or
    ``Transient`` when the factory refuses or is unreachable.
    """
    from talprov.talos.assets import AssetKind, Platform
    from talprov.talos.schematic import Schematic

    schematic_id = factory.register(Schematic.from_request(request))
    return factory.image_url(
        schematic_id, request.talos_version, Platform.NOCLOUD, request.arch,
        secure_boot=request.secure_boot, kind=AssetKind.ISO,
    )


def seed_iso_name(machine_uuid_text: str) -> str:
    """The file name of a machine's seed ISO."""
    return f"{SEED_PREFIX}{machine_uuid_text}.iso"


def meta_data(request: MachineRequest, machine_uuid_text: str) -> str:
    """NoCloud meta-data: the instance id and the hostname."""
    return yaml.safe_dump(
        {"instance-id": machine_uuid_text, "local-hostname": request.id}, sort_keys=True
    )


def network_config(static: StaticNetwork | None, mac: str) -> str | None:
    """NoCloud network-config (version 2) for net0, or None for DHCP."""
    if static is None:
        return None
    nic: dict[str, Any] = {
        "match": {"macaddress": mac.lower()},
        "addresses": [str(a) for a in static.addresses],
    }
    if static.gateway4 is not None:
        nic["gateway4"] = str(static.gateway4)
    if static.gateway6 is not None:
        nic["gateway6"] = str(static.gateway6)
    if static.dns_servers or static.search_domains:
        nic["nameservers"] = {
            "addresses": [str(a) for a in static.dns_servers],
            "search": list(static.search_domains),
        }
    if static.mtu is not None:
        nic["mtu"] = static.mtu
    return yaml.safe_dump({"version": 2, "ethernets": {"net0": nic}}, sort_keys=False)


def build_seed_iso(user_data: str, meta: str, network: str | None) -> bytes:
    """An ISO 9660 image labelled ``cidata`` holding the NoCloud files.

    Joliet and Rock Ridge names keep ``user-data`` etc. exact for every reader.
    The result holds the machine config: treat it as a secret.
    """
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=SEED_LABEL, joliet=3, rock_ridge="1.09")
    files = [("user-data", user_data), ("meta-data", meta)]
    if network is not None:
        files.append(("network-config", network))
    for index, (name, text) in enumerate(files, start=1):
        body = text.encode()
        iso.add_fp(io.BytesIO(body), len(body), f"/FILE{index}.;1", rr_name=name,
                   joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read_seed_iso(image: bytes) -> dict[str, str]:
    """The files of a seed ISO by name (for checks and tests)."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    try:
        files: dict[str, str] = {}
        for child in iso.list_children(rr_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.rock_ridge.name().decode()
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path="/" + name)
            files[name] = out.getvalue().decode()
        files["__label__"] = iso.pvd.volume_identifier.decode().strip()
        return files
    finally:
        iso.close()


def render_user_data(request: MachineRequest) -> str:
    """The user-data for the request (``talos.join.user_data_for``: named, with the
    join documents when asked).

    Raises ``InvalidRequest`` (field ``machine_config``) when the config is not YAML;
    the message never quotes the config.
    """
    from talprov.talos.join import user_data_for

    return user_data_for(request)
