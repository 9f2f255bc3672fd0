"""The bare-metal ``provider_data`` of a MachineRequest (exported as JSON Schema)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from talprov.baremetal.records import MACHINE_NAME_PATTERN
from talprov.providers.labels import Labels


class BareMetalMachineData(BaseModel):
    """Which machine of the inventory a request may take.

    Candidates are available, accepted, uncordoned machines whose labels contain
    every ``selector`` pair and whose recorded hardware meets the minimums (a
    machine with no recorded value for a minimum does not match it) and that have
    a BMC address (nothing could power one without). The first candidate by name
    wins, so allocation is deterministic.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    selector: Labels = Field(
        default_factory=dict, description="Labels the machine must carry (all of them); "
        "keys and values follow Kubernetes' label rule, as inventory labels do.")
    machine: str | None = Field(
        default=None, pattern=MACHINE_NAME_PATTERN,
        description="Take exactly this inventory machine (by name, as `baremetal add` "
                    "takes names).")
    min_cpus: int | None = Field(default=None, ge=1, description="Minimum CPU count.")
    min_memory_mib: int | None = Field(default=None, ge=1, description="Minimum memory, MiB.")
    min_disk_gb: int | None = Field(default=None, ge=1, description="Minimum disk size, GB.")
