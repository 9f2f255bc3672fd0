"""The vSphere ``provider_data`` of a MachineRequest (exported as JSON Schema).

It says how big the VM is, where it goes (cluster or resource pool, datastore or
storage policy, folder), which networks its NICs join, which template it is
cloned from (an existing one, an OVF item of a content library that talprov
deploys once, or the factory OVA that talprov imports once), and which vSphere
tags the VM gets.
Inventory names are paths below the datacenter's folders (``prod/talos``) or
plain names when they are unique.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_PATH = r"^[^\s/][^\n]*$"
# ``category:tag`` (split at the first colon) or a tag id.
_TAG = r"^(urn:vmomi:InventoryServiceTag:\S+|[^:\n]+:[^\n]+)$"
MIN_DISK_GIB = 10


class VSphereMachineData(BaseModel):
    """The shape and placement of one vSphere VM."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    cpu: int = Field(default=2, ge=1, le=768, description="Virtual CPUs.")
    cores_per_socket: int | None = Field(
        default=None, ge=1, le=768,
        description="Cores per socket; unset = the template's (vCenter's default layout).",
    )
    memory: int = Field(
        default=4096, ge=2048, le=24 * 1024 * 1024,
        description="Memory in MiB (Talos needs at least 2048).",
    )
    disk_size: int | None = Field(
        default=None, ge=MIN_DISK_GIB, le=62 * 1024,
        description="Size of the first disk in GiB; it is grown to this size after the "
        "clone (never shrunk). Unset: 20 GiB, or the template's size for linked clones.",
    )
    cluster: str | None = Field(
        default=None, pattern=_PATH,
        description="Cluster (or standalone host) whose root resource pool gets the VM. "
        "Unset with no resource_pool: the datacenter's only cluster or host.",
    )
    resource_pool: str | None = Field(
        default=None, pattern=_PATH,
        description="Resource pool path, e.g. DC0_C0/Resources/talos (overrides cluster).",
    )
    datastore: str | None = Field(
        default=None, pattern=_PATH,
        description="Datastore for the VM's files and disk. Unset: the template's datastore "
        "(or the storage policy's choice).",
    )
    storage_policy_id: str | None = Field(
        default=None, pattern=r"^[0-9A-Za-z-]{1,64}$",
        description="Id of a VM storage policy (SPBM profile) applied to the VM and its disk.",
    )
    folder: str | None = Field(
        default=None, pattern=_PATH,
        description="VM folder path below the datacenter's VM folder. Unset: that folder.",
    )
    network: tuple[str, ...] = Field(
        default=(), max_length=10,
        description="Networks (port group names) for the NICs, in order; a single name is "
        "accepted too. The template's first NIC is reused for the first network, more NICs "
        "(vmxnet3) are added. Empty: keep the template's NICs.",
    )
    template: str | None = Field(
        default=None, pattern=_PATH,
        description="An existing template (path or name) to clone instead of the factory "
        "OVA that talprov imports. It must boot Talos and read guestinfo.",
    )
    content_library: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=r"^[^\n]+$",
        description="Content library (name or id) holding library_item; set both or neither. "
        "The item is deployed once as a template and cloned per machine.",
    )
    library_item: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=r"^[^\n]+$",
        description="OVF template item (name or id) in content_library to clone from "
        "instead of template or the factory OVA.",
    )
    tags: tuple[str, ...] = Field(
        default=(), max_length=64,
        description="vSphere tags attached to the VM: 'category:tag' names or tag ids "
        "(urn:vmomi:InventoryServiceTag:...). They must exist; talprov does not create them.",
    )
    linked_clone: bool = Field(
        default=False,
        description="Clone as a linked clone from the template's snapshot (fast, thin; "
        "the disk keeps the template's size).",
    )

    @field_validator("network", "tags", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        # A tuple, not a list: a request's provider_data is validated strictly as
        # JSON, and strict mode takes no Python list for a tuple once a before
        # validator has run (every network list was refused as "must be a list").
        if isinstance(value, str):
            return (value,)
        return tuple(value) if isinstance(value, list) else value

    @field_validator("tags")
    @classmethod
    def _tag_refs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, ref in enumerate(value):
            if not re.match(_TAG, ref):
                raise ValueError(f"tags[{index}]: expected 'category:tag' or a tag id")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> VSphereMachineData:
        if (self.content_library is None) != (self.library_item is None):
            raise ValueError("content_library and library_item go together")
        if self.content_library is not None and self.template is not None:
            raise ValueError("template cannot be combined with content_library/library_item")
        return self

    @model_validator(mode="after")
    def _linked_clone_size(self) -> VSphereMachineData:
        if self.linked_clone and self.disk_size is not None:
            raise ValueError("disk_size cannot be set with linked_clone (a linked clone's "
                             "disk is a delta of the template's and keeps its size)")
        return self

    @property
    def wanted_disk_gib(self) -> int | None:
        """The disk size to grow to, or None to keep the template's."""
        if self.linked_clone:
            return None
        return self.disk_size if self.disk_size is not None else 20
