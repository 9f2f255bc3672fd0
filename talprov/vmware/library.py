"""A content library's OVF item as the clone source (``content_library`` + ``library_item``).

The item is deployed once (vAPI ``ovf/library-item/id:X?~action=deploy``) to a VM
named after the item and its content version, which is then marked
``talprov-imported``, snapshotted (base of linked clones) and marked a template;
every request cloned from that item reuses the template through the ordinary
clone path (guestinfo, disk UUIDs, instance UUID, power on). A new content
version of the item gets a new template; old ones are left for an administrator.

Deploys happen once per template, as OVA imports do (see ``images``): processes on
one host serialise on the same per-template lock file, and a marker file beside
it says that its holder is deploying. A VM of the template's name without the
``talprov-imported`` mark is either being deployed by another host (waited for
until it is ``task_timeout`` old) or left by a crashed deploy on this host (the
marker file is still there): that one is destroyed and deployed again.

The deploy call blocks until vCenter has deployed the item (bounded by
``task_timeout``), like the OVA upload does.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from talprov.processes import local_worker_id
from talprov.providers.errors import InvalidRequest, NotFound, Transient
from talprov.providers.protocol import Runtime
from talprov.vmware import sdk
from talprov.vmware.client import ServiceInstance, VSphereClient
from talprov.vmware.config import VSphereConfig
from talprov.vmware.data import VSphereMachineData
from talprov.vmware.errors import TRANSIENT_RETRY_AFTER
from talprov.vmware.images import IMPORTED_KEY, ImportBusy, finish_template, template_lock
from talprov.vmware.inventory import Inventory
from talprov.vmware.vapi import VapiClient

LIBRARY_PATH = "/com/vmware/content/library"
ITEM_PATH = "/com/vmware/content/library/item"
OVF_ITEM_PATH = "/com/vmware/vcenter/ovf/library-item"
LIBRARY_ITEM_KEY = "talprov-library-item"
OVF_TYPE = "ovf"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
LIBRARY_FIELD = "provider_data.content_library"
ITEM_FIELD = "provider_data.library_item"


@dataclass(frozen=True)
class LibraryItem:
    """The parts of a content library item talprov uses."""

    id: str
    name: str
    library_id: str
    type: str
    content_version: str


def library_template_name(item: LibraryItem) -> str:
    """The template deployed from ``item``: its name, id and content version (≤ 80 chars)."""
    base = _NAME_CHARS.sub("-", item.name).strip("-")[:40] or "item"
    return f"talos-lib-{base}-{item.id[:8]}-c{item.content_version or '1'}"


def _marker_path(cache_dir: Path, key: str) -> Path:
    # Beside template_lock's lock file; present while its holder deploys.
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return cache_dir / "vmware-locks" / f"{digest}.deploying"


def _item(value: Any) -> LibraryItem:
    return LibraryItem(id=str(value.get("id", "")), name=str(value.get("name", "")),
                       library_id=str(value.get("library_id", "")),
                       type=str(value.get("type", "")),
                       content_version=str(value.get("content_version", "") or ""))


class LibraryTemplates:
    """Finds content library items and the templates deployed from them."""

    def __init__(self, client: VSphereClient, vapi: VapiClient, config: VSphereConfig,
                 runtime: Runtime, inventory: Inventory) -> None:
        self.client = client
        self.vapi = vapi
        self.config = config
        self.runtime = runtime
        self.inventory = inventory

    # -- lookups ------------------------------------------------------------

    def find_library(self, ref: str) -> str:
        """The id of the library with id or name ``ref``. Raises ``InvalidRequest``."""
        if _UUID.match(ref):
            try:
                return str(self.vapi.call("read content library", "GET",
                                          f"{LIBRARY_PATH}/id:{ref}")["id"])
            except NotFound:
                pass  # a library may be named like a UUID
        found = self.vapi.call("find content library", "POST", LIBRARY_PATH, action="find",
                               body={"spec": {"name": ref}}) or []
        if not found:
            raise InvalidRequest(f"no content library {ref!r}", field=LIBRARY_FIELD)
        if len(found) > 1:
            raise InvalidRequest(f"{len(found)} content libraries are named {ref!r}; "
                                 "give the library's id", field=LIBRARY_FIELD)
        return str(found[0])

    def find_item(self, library_id: str, ref: str) -> LibraryItem:
        """The item with id or name ``ref`` in library ``library_id``.

        Raises ``InvalidRequest`` naming ``library_item`` when there is none, or it
        is not an OVF template (the only kind talprov deploys).
        """
        item: LibraryItem | None = None
        if _UUID.match(ref):
            try:
                item = _item(self.vapi.call("read library item", "GET", f"{ITEM_PATH}/id:{ref}"))
            except NotFound:
                item = None
            if item is not None and item.library_id != library_id:
                item = None
        if item is None:
            found = self.vapi.call("find library item", "POST", ITEM_PATH, action="find",
                                   body={"spec": {"library_id": library_id, "name": ref}}) or []
            if not found:
                raise InvalidRequest(f"no item {ref!r} in the content library",
                                     field=ITEM_FIELD)
            if len(found) > 1:
                raise InvalidRequest(f"{len(found)} items are named {ref!r}; give the "
                                     "item's id", field=ITEM_FIELD)
            item = _item(self.vapi.call("read library item", "GET",
                                        f"{ITEM_PATH}/id:{found[0]}"))
        if item.type.lower() != OVF_TYPE:
            raise InvalidRequest(f"item {ref!r} is of type {item.type!r}; only OVF "
                                 "templates can be deployed", field=ITEM_FIELD)
        return item

    def resolve(self, data: VSphereMachineData) -> LibraryItem:
        """The request's library item. Read-only. Raises ``InvalidRequest``."""
        assert data.content_library is not None
        assert data.library_item is not None
        return self.find_item(self.find_library(data.content_library), data.library_item)

    # -- the template -------------------------------------------------------

    def ensure(self, data: VSphereMachineData) -> tuple[str, str]:
        """(name, moid) of the template deployed from the request's item, deployed if needed.

        Idempotent. Raises ``ImportBusy`` while another process deploys it,
        ``InvalidRequest`` for an unknown library or item or bad placement,
        ``Transient``/``AuthError`` otherwise.
        """
        item = self.resolve(data)
        name = library_template_name(item)
        folder_path = self.config.template_folder or data.folder
        found = self.client.call(f"look up template {name}",
                                 lambda si: self._check(si, folder_path, name, None))
        if found is not None:
            return name, found
        lock_key = f"{self.client.host}:{self.client.port}/{folder_path or ''}/{name}"
        with template_lock(self.runtime.cache_dir, lock_key) as held:
            if not held:
                raise ImportBusy(f"template {name} is being deployed by another process",
                                 retry_after=self.config.poll_interval)
            marker = _marker_path(self.runtime.cache_dir, lock_key)
            crashed_here = marker.exists()
            found = self.client.call(f"look up template {name}",
                                     lambda si: self._check(si, folder_path, name, crashed_here))
            if found is None:
                marker.write_text(local_worker_id())
                moid = self._deploy(data, item, name, folder_path)
                self.client.call(f"finish template {name}",
                                 lambda si: self._finish(si, moid, name, item))
                found = moid
            marker.unlink(missing_ok=True)
            return name, found

    def _check(self, si: ServiceInstance, folder_path: str | None, name: str,
               crashed_here: bool | None) -> str | None:
        """The template's moid when ready; None when it must be deployed.

        ``crashed_here`` is None without the template lock (then nothing is changed)
        and tells, under the lock, whether this host's last deploy died.
        """
        vm = si.content.searchIndex.FindChild(self.inventory.folder(si, folder_path), name)
        if vm is None:
            return None
        if vm.config.template:
            return str(vm._moId)
        if crashed_here is None:
            return None
        marks = {o.key: str(o.value) for o in vm.config.extraConfig or ()}
        if IMPORTED_KEY in marks:
            finish_template(self.client, vm, name)
            return str(vm._moId)
        created = vm.config.createDate
        age = (datetime.now(UTC) - created).total_seconds() if created else 0.0
        if not crashed_here and age < self.config.task_timeout:
            raise ImportBusy(f"template {name} is being deployed",
                             retry_after=self.config.poll_interval)
        self.client.wait_task(vm.Destroy_Task(), f"remove crashed deploy {name}")
        return None

    def _deploy(self, data: VSphereMachineData, item: LibraryItem, name: str,
                folder_path: str | None) -> str:
        """Deploy ``item`` as VM ``name``; its moid. Blocks up to ``task_timeout``."""

        def where(si: ServiceInstance) -> tuple[str, str, str, list[str]]:
            folder = self.inventory.folder(si, folder_path)
            place = self.inventory.placement(si, data, folder_path=folder_path or "")
            datastore = place.datastore or self.inventory.default_datastore(si, place.pool)
            return (str(folder._moId), str(place.pool._moId), str(datastore._moId),
                    [str(n._moId) for n in place.networks])

        folder_id, pool_id, datastore_id, network_ids = self.client.call(
            f"place template {name}", where)
        target = {"resource_pool_id": pool_id, "folder_id": folder_id}
        spec: dict[str, Any] = {"name": name, "accept_all_EULA": True,
                                "default_datastore_id": datastore_id,
                                "storage_provisioning": "thin"}
        if data.storage_policy_id:
            spec["storage_profile_id"] = data.storage_policy_id
        if network_ids:
            # The clones' NICs are bound to the request's networks anyway; mapping
            # the OVF's networks only keeps vCenter from rejecting unknown names.
            summary = self.vapi.call(f"read OVF of {item.name}", "POST",
                                     f"{OVF_ITEM_PATH}/id:{item.id}", action="filter",
                                     body={"target": target}) or {}
            spec["network_mappings"] = [{"key": str(net), "value": network_ids[0]}
                                        for net in summary.get("networks") or ()]
        what = f"deploy library item {item.name} as {name}"
        self.runtime.progress(what, 0, None)
        result = self.vapi.call(what, "POST", f"{OVF_ITEM_PATH}/id:{item.id}", action="deploy",
                                body={"target": target, "deployment_spec": spec},
                                timeout=self.config.task_timeout) or {}
        return deployed_vm(result, what)

    def _finish(self, si: ServiceInstance, moid: str, name: str, item: LibraryItem) -> None:
        vim = sdk.vim()

        vm = vim.VirtualMachine(moid, si._stub)
        self.client.wait_task(vm.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=[
            vim.option.OptionValue(key=IMPORTED_KEY, value=str(int(time.time()))),
            vim.option.OptionValue(key=LIBRARY_ITEM_KEY, value=item.id),
        ])), f"mark deploy of {name} done")
        finish_template(self.client, vm, name)


def deployed_vm(result: Any, what: str) -> str:
    """The VM moid in a deploy answer (``DeploymentResult``).

    Raises ``Transient`` naming the first error's category and message when the
    deploy did not succeed (vCenter removes what a failed deploy created).
    """
    resource = result.get("resource_id") if isinstance(result, dict) else None
    if isinstance(result, dict) and result.get("succeeded") and isinstance(resource, dict):
        return str(resource["id"])
    errors = ((result.get("error") or {}).get("errors") or []) if isinstance(result, dict) else []
    reason = "no reason given"
    if errors:
        first = errors[0]
        message = (first.get("message") or {}).get("default_message") or next(
            (m.get("default_message") for m in (first.get("error") or {}).get("messages") or ()),
            None)
        reason = f"{first.get('category', '?')}: {str(message or '?')[:200]}"
    raise Transient(f"{what} failed ({reason})", retry_after=TRANSIENT_RETRY_AFTER)
