"""The autoscaler's template node reads a stored class's provider_data as stored."""

from __future__ import annotations

from types import SimpleNamespace

from pydantic import BaseModel, ValidationInfo, field_validator

from talprov.autoscaler.template import Capacity, class_capacity
from talprov.providers.types import is_stored
from talprov.scaler.models import MachineClass


class _SizedData(BaseModel):
    """A provider_data model whose ``pool`` follows a rule newer than stored specs."""

    cpu: int
    memory: int
    pool: str = "default"

    @field_validator("pool")
    @classmethod
    def _newer_rule(cls, pool: str, info: ValidationInfo) -> str:
        if not is_stored(info) and not pool.islower():
            raise ValueError("must be lowercase")
        return pool


def test_a_stored_class_gets_its_capacity_under_the_stored_rules() -> None:
    # A class stored before a provider_data rule tightened (e.g. a bare-metal
    # machine name 'Node_1') must still give the template node its size; before,
    # it was validated as new input and the autoscaler's template call failed.
    machine_class = MachineClass(name="big", provider="lab",
                                 provider_data={"cpu": 4, "memory": 8192, "pool": "Old_Pool"})
    provider = SimpleNamespace(type_name="proxmox", data_model=_SizedData)
    assert class_capacity(provider, machine_class) == Capacity(cpu=4, memory_mib=8192)
