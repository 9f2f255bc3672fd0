"""The bare-metal ``provider_data`` of a MachineRequest (exported as JSON Schema)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema

from talprov.baremetal.records import MACHINE_NAME_PATTERN, check_machine_name
from talprov.providers.labels import Labels
from talprov.providers.types import is_stored


def _named_by_the_rule(name: str, info: ValidationInfo) -> str:
    # A request stored before the name rule may name a machine added before it:
    # read back (STORED), it must go on to its next step, as stored labels do.
    return name if is_stored(info) else check_machine_name(name)


MachineName = Annotated[str, AfterValidator(_named_by_the_rule),
                        WithJsonSchema({"type": "string", "pattern": MACHINE_NAME_PATTERN})]


class BareMetalMachineData(BaseModel):
    """Which machine of the inventory a request may take.

    Candidates are available, accepted, uncordoned machines whose labels contain
    every ``selector`` pair and whose recorded hardware meets the minimums (a
    machine with no recorded value for a minimum does not match it) and that have
    a BMC address (nothing could power one without). The first candidate by name
    wins, so allocation is deterministic.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    selector: Labels = Field(
        default_factory=dict, description="Labels the machine must carry (all of them); "
        "keys and values follow Kubernetes' label rule, as inventory labels do.")
    machine: MachineName | None = Field(
        default=None,
        description="Take exactly this inventory machine (by name, as `baremetal add` "
                    "takes names).")
    min_cpus: int | None = Field(default=None, ge=1, description="Minimum CPU count.")
    min_memory_mib: int | None = Field(default=None, ge=1, description="Minimum memory, MiB.")
    min_disk_gb: int | None = Field(default=None, ge=1, description="Minimum disk size, GB.")
