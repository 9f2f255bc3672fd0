"""Proxmox VE in ``talprov demo``, on fakepve.

There is no Image Factory in the demo, so the VMs boot a small placeholder ISO
uploaded through the PVE API first (provider_data ``iso``); their machine
config reaches PVE on the driver's NoCloud seed ISO, as on a real cluster.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from talprov.demo_platforms.common import (
    EmulatorProcess,
    Row,
    certificate_fingerprint,
    file_ref,
    start_emulator,
    write_secret,
)
from talprov.store.records import RequestRecord

PVE_USER = "root@pam"
PLACEHOLDER_NOTE = (b"Stands in for the Talos nocloud ISO in talprov's demo; "
                    b"fakepve boots nothing.\n")


def _placeholder_iso() -> bytes:
    """A tiny ISO 9660 image: what the demo VMs 'boot' instead of the factory's ISO."""
    import io

    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident="TALOS_DEMO", joliet=3)
    iso.add_fp(io.BytesIO(PLACEHOLDER_NOTE), len(PLACEHOLDER_NOTE), "/README.TXT;1",
               joliet_path="/README.txt")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def upload_placeholder(client: Any, name: str) -> str:
    """Upload the placeholder ISO through ``client`` (a ``PveClient``) to storage
    ``local`` of the first node; its volume id. Raises ``ProviderError``."""
    import io

    nodes = client.get("list nodes", "nodes")
    node = sorted(str(n["node"]) for n in nodes)[0]
    body = io.BytesIO(_placeholder_iso())
    body.name = name  # proxmoxer names the uploaded file after this
    what = f"upload {name}"
    upid = client.call(what, lambda api: api.nodes(node).storage("local").upload.post(
        content="iso", filename=body))
    client.wait_task(node, str(upid), what)
    return f"local:iso/{name}"


class ProxmoxDemo:
    """Proxmox VE on fakepve: VMs boot a placeholder ISO, their config on a seed ISO."""

    name = "proxmox"
    provider = "proxmox-demo"

    def __init__(self, emulator: EmulatorProcess, url: str, password_file: Path,
                 fingerprint: str, client: Any) -> None:
        self.emulator = emulator
        self.url = url
        self.password_file = password_file
        self.fingerprint = fingerprint
        self.client = client
        self.iso_volume = ""

    def __repr__(self) -> str:
        return f"ProxmoxDemo({self.url})"

    @classmethod
    def start(cls, folder: Path, command: str, talos_version: str) -> ProxmoxDemo:
        """Start fakepve, pin its certificate and upload the placeholder ISO.

        Raises ``RuntimeError`` or ``ProviderError``; fakepve is stopped then.
        """
        from talprov.proxmox.client import PveClient
        from talprov.proxmox.config import ProxmoxConfig

        guests = folder / "guests.json"
        guests.write_text('{"guests": []}')
        password = secrets.token_urlsafe(18)
        password_file = write_secret(folder / "password", password)
        # The password travels in fakepve's environment (PVE_PASS), not on its
        # command line where every local user could read it.
        emulator, url = start_emulator(
            "fakepve", [command, str(guests), "--host", "127.0.0.1", "--port", "0",
                        "--time-scale", "0", "--user", PVE_USER],
            folder / "fakepve.log", "fakepve listening on ", env={"PVE_PASS": password})
        try:
            host, port = url.removeprefix("https://").rsplit(":", 1)
            fingerprint = certificate_fingerprint(host, int(port))
            config = ProxmoxConfig.model_validate({
                "url": url, "username": PVE_USER, "password": password,
                "fingerprint": fingerprint})
            demo = cls(emulator, url, password_file, fingerprint, PveClient(config))
            demo.iso_volume = demo.upload_placeholder(
                f"talos-{talos_version}-nocloud-amd64-placeholder.iso")
        except BaseException:
            emulator.stop()
            raise
        return demo

    def upload_placeholder(self, name: str) -> str:
        """Upload the placeholder ISO to storage ``local`` of the first node; its volume id."""
        return upload_placeholder(self.client, name)

    def provider_block(self) -> dict[str, Any]:
        return {"type": "proxmox", "url": self.url, "username": PVE_USER,
                "password": file_ref(self.password_file), "fingerprint": self.fingerprint,
                "poll_interval": 0.5, "concurrency": 8}

    def machine_class(self) -> dict[str, Any]:
        return {"kind": "MachineClass", "name": "proxmox-small", "provider": self.provider,
                "provider_data": {"iso": self.iso_volume, "cores": 1, "memory": 2048,
                                  "disk_size": 10}}

    def verify(self, records: list[RequestRecord]) -> list[dict[str, Any]]:
        """Each VM's config as PVE reports it: boot ISO, seed ISO, SMBIOS UUID, status.

        PVE has no API that reads an ISO's bytes back, so the seed ISO is checked
        by name (the VM's UUID) and size (that of the seed built from the request).
        """
        vms = {str(item["vmid"]): item
               for item in self.client.get("list VMs", "cluster/resources", type="vm")}
        listings: dict[tuple[str, str], dict[str, int]] = {}
        rows = []
        for record in records:
            row = Row(self.name, record)
            item = vms.get(record.infra_id or "")
            if item is not None:
                self._check_vm(row, item, listings)
            rows.append(row.as_dict())
        return rows

    def _check_vm(self, row: Row, item: Mapping[str, Any],
                  listings: dict[tuple[str, str], dict[str, int]]) -> None:
        from talprov.proxmox import images, vm
        from talprov.proxmox.data import ProxmoxMachineData
        from talprov.proxmox.vm import BOOT_CDROM, SEED_CDROM

        node, vmid = str(item["node"]), str(item["vmid"])
        row.where, row.state = node, str(item.get("status"))
        config = self.client.get(f"read VM {vmid}", f"nodes/{node}/qemu/{vmid}/config")
        boot = str(config.get(BOOT_CDROM, "")).split(",")[0]
        seed = str(config.get(SEED_CDROM, "")).split(",")[0]
        storage = seed.split(":", 1)[0]
        if (node, storage) not in listings:
            found = self.client.get(f"list ISOs on {storage}",
                                    f"nodes/{node}/storage/{storage}/content", content="iso")
            listings[(node, storage)] = {str(i["volid"]): int(i.get("size") or 0) for i in found}
        request, uuid_text = row.record.request, row.record.machine_uuid or ""
        data = ProxmoxMachineData.model_validate(request.provider_data)
        expected = images.build_seed_iso(
            images.render_user_data(request), images.meta_data(request, uuid_text),
            images.network_config(data.static_network, vm.mac_address(uuid_text)))
        seed_ok = (bool(uuid_text) and seed.endswith("/" + images.seed_iso_name(uuid_text))
                   and listings[(node, storage)].get(seed) == len(expected))
        uuid_ok = bool(uuid_text) and f"uuid={uuid_text}" in str(config.get("smbios1", ""))
        row.config = f"seed ISO attached ({len(expected)} B)" if seed_ok else "SEED MISMATCH"
        row.check = "smbios uuid, boot ISO" if uuid_ok and boot == self.iso_volume \
            else "MISMATCH"
        row.ok = seed_ok and uuid_ok and boot == self.iso_volume and row.state == "running"

    def stop(self) -> None:
        self.emulator.stop()

    def pid(self) -> int:
        return self.emulator.process.pid

    def keep_hint(self) -> str:
        return (f"fakepve at {self.url} (pid {self.emulator.process.pid}, user {PVE_USER}, "
                f"password in {self.password_file})")


