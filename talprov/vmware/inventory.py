"""Finding inventory objects by name or path: datacenter, folders, pools, datastores, networks.

Paths are relative to the datacenter's folders (``vm/``, ``host/``, ``datastore/``,
``network/``) as vCenter's inventory paths are; a plain name that is unique in the
datacenter works as well. Lookups that find nothing raise ``InvalidRequest``
naming the setting (``provider_data.<field>``, or ``providers.<instance>.<key>``
for the provider config's ``datacenter`` and ``template_folder``) and the kind of
object looked for, because a wrong name will not fix itself.

What a lookup finds is remembered per provider instance (as a managed object id,
bound to the current session when used) for ``CACHE_SECONDS``: every clone of a
pass needs the same template, pool, folder and networks, and finding them costs
several round trips each. ``forget`` drops it all; the provider calls it when
vCenter answers that an object is gone, so a removed or replaced object is
looked up again on the step's retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from talprov.providers.errors import InvalidRequest, NotFound, ProviderError
from talprov.vmware import sdk
from talprov.vmware.client import ServiceInstance, VSphereClient
from talprov.vmware.data import VSphereMachineData

log = logging.getLogger(__name__)

TEMPLATE_FIELD = "provider_data.template"
#: How long a lookup's answer is used before it is looked up again.
CACHE_SECONDS = 300.0


@dataclass(frozen=True)
class Placement:
    """Where a VM (or an imported template) goes."""

    folder: Any
    pool: Any
    datastore: Any | None
    networks: tuple[Any, ...]


def uses_template_devices(data: VSphereMachineData, networks: tuple[Any, ...]) -> bool:
    """Whether a clone spec for ``data`` edits the template's devices (grows its
    disk, attaches ``networks``): only then are they read."""
    return data.wanted_disk_gib is not None or bool(networks)


#: What each looked-up kind of object is called in an error.
NOUNS = {"Folder": "VM folder", "VirtualMachine": "template or VM",
         "ResourcePool": "resource pool", "ComputeResource": "cluster or host",
         "Datastore": "datastore", "Network": "network (port group)"}


class Inventory:
    """Name and path lookups in one datacenter."""

    def __init__(self, client: VSphereClient, datacenter: str | None,
                 clock: Callable[[], float] = time.monotonic, *, instance: str = "",
                 template_folder: str | None = None) -> None:
        self.client = client
        self.datacenter_name = datacenter
        # For errors: the provider config's settings are named providers.<instance>.<key>.
        self._setting = f"providers.{instance}." if instance else ""
        self.template_folder = template_folder
        self._clock = clock
        # key -> (managed object class, moid, when found)
        self._found: dict[tuple[str, ...], tuple[type, str, float]] = {}
        # template moid -> (its config.hardware.device, when read)
        self._devices: dict[str, tuple[list[Any], float]] = {}
        # The found datacenter's name, when none is configured (its paths' start).
        self._datacenter_label: str | None = None
        self._lock = threading.RLock()  # lookups nest (a pool needs the datacenter)

    def forget(self) -> None:
        """Look everything up again next time (an object was gone). Idempotent."""
        with self._lock:
            self._found.clear()
            self._devices.clear()
            self._datacenter_label = None

    def _remembered(self, si: ServiceInstance, key: tuple[str, ...],
                    look: Callable[[], Any]) -> Any:
        """``look()``'s object, or the one it found within ``CACHE_SECONDS``."""
        now = self._clock()
        # Held while looking up, so that the requests of a pass that all miss at
        # once wait for one lookup instead of each making their own.
        with self._lock:
            hit = self._found.get(key)
            if hit is not None and now - hit[2] < CACHE_SECONDS:
                cls, moid, _ = hit
                return cls(moid, si._stub)
            found = look()
            self._found[key] = (type(found), str(found._moId), now)
            return found

    def datacenter(self, si: ServiceInstance) -> Any:
        return self._remembered(si, ("datacenter",), lambda: self._datacenter(si))

    def _datacenter(self, si: ServiceInstance) -> Any:
        vim = sdk.vim()

        content = si.content
        if self.datacenter_name:
            found = content.searchIndex.FindByInventoryPath(self.datacenter_name)
            if isinstance(found, vim.Datacenter):
                return found
            raise InvalidRequest(f"no datacenter {self.datacenter_name!r}",
                                 field=f"{self._setting}datacenter")
        # With their names: every path lookup below starts with the datacenter's.
        found_all = self.client.retrieve_in_folders("find the datacenter", vim.Datacenter,
                                                    ["name"])
        if len(found_all) != 1:
            raise InvalidRequest(f"{len(found_all)} datacenters; name one in the provider "
                                 "config", field=f"{self._setting}datacenter")
        found, props = found_all[0]
        with self._lock:
            self._datacenter_label = str(props.get("name") or "") or None
        return found

    def _path(self, si: ServiceInstance, kind: str, path: str) -> Any | None:
        dc = self.datacenter(si)
        base = self.datacenter_name or self._datacenter_label or dc.name
        return si.content.searchIndex.FindByInventoryPath(f"{base}/{kind}/{path.strip('/')}")

    def _by_name(self, si: ServiceInstance, root: Any, types: list[type], name: str
                 ) -> list[Any]:
        view = si.content.viewManager.CreateContainerView(root, types, True)
        try:
            return [obj for obj in view.view if obj.name == name]
        finally:
            view.Destroy()

    def find(self, si: ServiceInstance, kind: str, types: list[type], name: str,
             field: str) -> Any:
        """The object at path ``kind/name`` or the one object of ``types`` named ``name``."""
        key = ("find", kind, name, *(t.__name__ for t in types))
        return self._remembered(si, key, lambda: self._find(si, kind, types, name, field))

    def _find(self, si: ServiceInstance, kind: str, types: list[type], name: str,
              field: str) -> Any:
        found = self._path(si, kind, name)
        if found is not None and isinstance(found, tuple(types)):
            return found
        root = getattr(self.datacenter(si), f"{kind}Folder")
        matches = self._by_name(si, root, types, name)
        if len(matches) == 1:
            return matches[0]
        noun = NOUNS.get(types[0].__name__.rsplit(".", 1)[-1], types[0].__name__)
        if matches:
            raise InvalidRequest(f"{len(matches)} objects of kind {noun} are named {name!r} in "
                                 f"the datacenter; give the path below its {kind} folder",
                                 field=field)
        raise InvalidRequest(f"no {noun} {name!r} in the datacenter (looked for the path "
                             f"below its {kind} folder and for the name)", field=field)

    def folder(self, si: ServiceInstance, path: str | None) -> Any:
        """The VM folder at ``path`` (the datacenter's VM folder when unset); an error
        names ``template_folder`` when ``path`` is the provider config's."""
        vim = sdk.vim()

        if not path:
            return self._remembered(si, ("vmFolder",), lambda: self.datacenter(si).vmFolder)
        field = (f"{self._setting}template_folder" if path == self.template_folder
                 else "provider_data.folder")
        return self.find(si, "vm", [vim.Folder], path, field)

    def pool(self, si: ServiceInstance, data: VSphereMachineData) -> Any:
        key = ("pool", data.resource_pool or "", data.cluster or "")
        return self._remembered(si, key, lambda: self._pool(si, data))

    def _pool(self, si: ServiceInstance, data: VSphereMachineData) -> Any:
        vim = sdk.vim()

        if data.resource_pool:
            return self.find(si, "host", [vim.ResourcePool], data.resource_pool,
                             "provider_data.resource_pool")
        if data.cluster:
            compute = self.find(si, "host", [vim.ComputeResource], data.cluster,
                                "provider_data.cluster")
            return compute.resourcePool
        view = si.content.viewManager.CreateContainerView(
            self.datacenter(si).hostFolder, [vim.ComputeResource], True)
        try:
            computes = list(view.view)
        finally:
            view.Destroy()
        clusters = [c for c in computes if isinstance(c, vim.ClusterComputeResource)]
        choice = clusters if clusters else computes
        if len(choice) != 1:
            raise InvalidRequest(f"{len(choice)} clusters or hosts in the datacenter; name one "
                                 "in provider_data.cluster or provider_data.resource_pool",
                                 field="provider_data.cluster")
        return choice[0].resourcePool

    def placement(self, si: ServiceInstance, data: VSphereMachineData,
                  folder_path: str | None = None) -> Placement:
        """Folder, pool, datastore and networks for ``data``. Raises ``InvalidRequest``."""
        vim = sdk.vim()

        datastore = None
        if data.datastore:
            datastore = self.find(si, "datastore", [vim.Datastore], data.datastore,
                                  "provider_data.datastore")
        networks = tuple(
            self.find(si, "network", [vim.Network], name, f"provider_data.network[{index}]")
            for index, name in enumerate(data.network)
        )
        folder = self.folder(si, folder_path if folder_path is not None else data.folder)
        return Placement(folder=folder, pool=self.pool(si, data), datastore=datastore,
                         networks=networks)

    def template(self, si: ServiceInstance, path: str) -> Any:
        """A user-named clone source (``provider_data.template``): a template, or a VM
        that is powered off (vCenter clones either). Raises ``InvalidRequest`` for a
        VM that is on or suspended: its clone would copy a running Talos's disk,
        crash-consistent, with the state of that machine."""
        return self._remembered(si, ("template", path), lambda: self._template(si, path))

    def _template(self, si: ServiceInstance, path: str) -> Any:
        vim = sdk.vim()

        found = self._find(si, "vm", [vim.VirtualMachine], path, TEMPLATE_FIELD)
        props = self.client.get(f"read template {path}", found,
                                ["config.template", "runtime.powerState"])
        power = str(props.get("runtime.powerState", ""))
        if not props.get("config.template") and power != "poweredOff":
            raise InvalidRequest(
                f"{path!r} is a VM that is {power or 'in an unknown power state'}, not a "
                "template; name a template or a powered-off VM that has never booted",
                field=TEMPLATE_FIELD)
        return found

    def template_devices(self, template: Any) -> list[Any]:
        """The template's virtual devices, read once per ``CACHE_SECONDS``: every
        clone spec starts from them, and reading a VM's config is the heaviest
        read there is. Callers must not change them (``machines.device_changes``
        edits copies)."""
        now = self._clock()
        moid = str(template._moId)
        with self._lock:
            hit = self._devices.get(moid)
            if hit is not None and now - hit[1] < CACHE_SECONDS:
                return hit[0]
            devices = list(template.config.hardware.device)
            self._devices[moid] = (devices, now)
            return devices

    def look_ahead(self, data: VSphereMachineData, template_moid: str) -> None:
        """Look up ``data``'s placement and, when a clone spec needs them
        (``uses_template_devices``), the template's devices, to be remembered for
        the clones to come: ensure-template calls it while the pass's listing is
        on its way, which clone-vm waits for. Never raises (best effort): the
        clone looks up again and reports what fails."""
        vim = sdk.vim()

        def run(si: ServiceInstance) -> None:
            place = self.placement(si, data)
            if uses_template_devices(data, place.networks):
                self.template_devices(vim.VirtualMachine(template_moid, si._stub))

        try:
            self.client.call(f"look up where template {template_moid}'s clones go", run)
        except NotFound as exc:
            self.forget()
            log.debug("looking up the placement ahead failed: %s", exc)
        except ProviderError as exc:
            log.debug("looking up the placement ahead failed: %s", exc)

    def default_datastore(self, si: ServiceInstance, pool: Any) -> Any:
        """The datastore with the most free space reachable from ``pool``'s hosts."""
        owner = pool.owner
        stores = [ds for ds in owner.datastore if ds.summary.accessible]
        if not stores:
            raise InvalidRequest("no accessible datastore for the resource pool",
                                 field="provider_data.datastore")
        return max(stores, key=lambda ds: (ds.summary.freeSpace, ds.name))
