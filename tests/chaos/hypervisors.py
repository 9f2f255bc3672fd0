"""Proxmox VE (fakepve) and vSphere (vcsim) as chaos platforms, each behind an HTTPS
fault proxy (:mod:`tests.chaos.tls_proxy`).

What a request holds is read from the emulator directly, never through the proxy:

- Proxmox: VMs by the driver's request tag, the request's seed ISO (named after
  its deterministic SMBIOS UUID); ownerless: a disk ``vm-<vmid>-…`` whose VM is gone;
- vSphere: VMs by the request mark in their extraConfig; ownerless: a VMDK on the
  datastore that no VM (template or sample VM included) references.

Talos ISOs and templates are shared by every request of a version and schematic
(a cache, not a request's part), so they are not counted.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from talprov.providers.ownership import REQUEST_KEY
from talprov.proxmox import images
from talprov.proxmox import vm as pve_vm
from talprov.proxmox.tags import decode_tags, request_mark_values
from tests.chaos.observed import ObservedPlatform
from tests.chaos.tls_proxy import PVE, VSPHERE, TlsFaultProxy

INSTANCE = "chaos"  # the provider instance name rounds.py configures
_DISK = re.compile(r"^vm-(\d+)-")


@contextmanager
def proxmox_platform(workdir: Path, seed: int) -> Iterator[ObservedPlatform]:
    """fakepve behind the HTTPS fault proxy."""
    from tests.emulators.fakepve import start_fakepve

    (workdir / "pve").mkdir()
    (workdir / "proxy-pki").mkdir()
    server = start_fakepve(workdir / "pve")
    proxy = TlsFaultProxy(server.url, PVE, seed, cert_dir=workdir / "proxy-pki",
                          backend_ca=server.ca_file)
    proxy.start()
    seen: dict[str, Any] = {"vms": [], "storages": {}}

    def refresh() -> None:
        seen["vms"] = server.vms()
        seen["storages"] = server.control("storages")

    def resources_of(request_id: str) -> dict[str, int]:
        marks = request_mark_values(request_id)
        machines = sum(1 for vm in seen["vms"]
                       if decode_tags(vm["config"].get("tags")).get(REQUEST_KEY) in marks)
        seed_iso = images.seed_iso_name(pve_vm.machine_uuid(f"chaos-{seed}", INSTANCE,
                                                            request_id))
        seeds = sum(1 for store in seen["storages"].values() if seed_iso in store["files"])
        return {"machines": machines, "seed_isos": seeds}

    def leftovers() -> dict[str, int]:
        vmids = {int(vm["vmid"]) for vm in seen["vms"]}
        orphans = [name for store in seen["storages"].values() for name in store["volumes"]
                   if (match := _DISK.match(name)) and int(match.group(1)) not in vmids]
        return {"disks_without_vm": len(orphans)}

    try:
        yield ObservedPlatform(
            "proxmox", proxy,
            {"type": "proxmox", "url": proxy.url, "username": server.user,
             "password": server.password, "ca_file": str(proxy.cert_file),
             "poll_interval": 0.5, "timeout": 10.0},
            {"memory": 2048, "cores": 1, "disk_size": 10}, resources_of,
            refresh=refresh, leftovers=leftovers)
    finally:
        proxy.stop()
        server.stop()


def _vsphere_view(server: Any) -> tuple[list[dict[str, Any]], set[str]]:
    """(every VM's request mark and disk files, every VMDK file on the datastores)."""
    from pyVim import connect
    from pyVmomi import vim

    smart_connect: Any = connect.SmartConnect
    si = smart_connect(host="127.0.0.1", port=server.port, user=server.user,
                       pwd=server.password,
                       sslContext=ssl.create_default_context(cafile=str(server.ca_file)))
    try:
        content = si.content
        vms: list[dict[str, Any]] = []
        view = content.viewManager.CreateContainerView(content.rootFolder,
                                                       [vim.VirtualMachine], True)
        try:
            for machine in view.view:
                config = machine.config
                extra = {o.key: str(o.value) for o in config.extraConfig} if config else {}
                disks = {str(getattr(d.backing, "fileName", ""))
                         for d in (config.hardware.device if config else ())
                         if isinstance(d, vim.vm.device.VirtualDisk)}
                vms.append({"request": extra.get(REQUEST_KEY), "disks": disks})
        finally:
            view.Destroy()
        files: set[str] = set()
        view = content.viewManager.CreateContainerView(content.rootFolder,
                                                       [vim.Datastore], True)
        try:
            for store in view.view:
                # vcsim keeps a datastore in a local directory, its summary's URL.
                root = Path(unquote(urlsplit(store.summary.url).path))
                files |= {f"[{store.name}] {p.relative_to(root)}" for p in root.rglob("*.vmdk")
                          if not p.name.endswith("-flat.vmdk")}
        finally:
            view.Destroy()
        return vms, files
    finally:
        si.content.sessionManager.Logout()


@contextmanager
def vsphere_platform(workdir: Path, seed: int) -> Iterator[ObservedPlatform]:
    """vcsim behind the HTTPS fault proxy (SOAP, vAPI REST and NFC uploads alike)."""
    from talprov.demo_platforms.vmware import TEMPLATE, VSphereDemo
    from tests.emulators.vcsim.fixture import start_vcsim

    (workdir / "vcsim").mkdir()
    (workdir / "proxy-pki").mkdir()
    server = start_vcsim(workdir / "vcsim")
    # The template is made beside the proxy: importing the factory OVA takes some
    # twenty calls in one step, which 20% faults per call almost never let through
    # (reported in the chaos findings); the rounds exercise a request's own VM.
    assert server.emulator is not None
    VSphereDemo(server.emulator, server.url, workdir / "unused", server.ca_file
                ).make_template(server.password)
    backend = server.url.removesuffix("/sdk")
    proxy = TlsFaultProxy(backend, VSPHERE, seed, cert_dir=workdir / "proxy-pki",
                          backend_ca=server.ca_file)
    proxy.start()
    seen: dict[str, Any] = {"vms": [], "files": set()}

    def refresh() -> None:
        seen["vms"], seen["files"] = _vsphere_view(server)

    def unreferenced() -> set[str]:
        referenced: set[str] = set().union(*(vm["disks"] for vm in seen["vms"]))
        return set(seen["files"]) - referenced

    refresh()
    # vcsim's own inventory starts with a VMDK no VM references: not ours.
    before = unreferenced()

    def resources_of(request_id: str) -> dict[str, int]:
        return {"machines": sum(1 for vm in seen["vms"] if vm["request"] == request_id)}

    def leftovers() -> dict[str, int]:
        left = sorted(unreferenced() - before)  # named in the finding, to look into
        return {f"vmdks_without_vm {left}" if left else "vmdks_without_vm": len(left)}

    try:
        yield ObservedPlatform(
            "vmware", proxy,
            {"type": "vmware", "url": proxy.url + "/sdk", "username": server.user,
             "password": server.password, "ca_file": str(proxy.cert_file),
             "poll_interval": 0.5, "timeout": 15.0},
            {"cluster": "DC0_C0", "datastore": "LocalDS_0", "network": "VM Network",
             "template": TEMPLATE, "cpu": 1, "memory": 2048}, resources_of,
            refresh=refresh, leftovers=leftovers)
    finally:
        proxy.stop()
        server.stop()
