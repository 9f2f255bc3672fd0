"""The scaler: cluster specs → machine sets → MachineRequests.

The pure half lives here: :func:`load_spec` reads a spec, :func:`plan` turns
(spec, observed machines, time) into actions, :func:`desired_request` builds the
request a set's machine is created from. Nothing in this package reads the
store or calls a provider.
"""

from talprov.scaler.actions import Action, ActionKind, OrphanReport, Plan, SetStatus
from talprov.scaler.models import CONTROL_PLANE_SET, ClusterSpec, MachineSetSpec, Role
from talprov.scaler.observed import ObservedMachine, OrphanMachine, SetBackoff, next_backoff
from talprov.scaler.plan import plan, plan_destroy
from talprov.scaler.spec import load_spec, load_spec_file
from talprov.scaler.templates import (
    desired_request,
    random_names,
    seeded_names,
    template,
    template_hash,
)

__all__ = [
    "CONTROL_PLANE_SET",
    "Action",
    "ActionKind",
    "ClusterSpec",
    "MachineSetSpec",
    "ObservedMachine",
    "OrphanMachine",
    "OrphanReport",
    "Plan",
    "Role",
    "SetBackoff",
    "SetStatus",
    "desired_request",
    "load_spec",
    "load_spec_file",
    "next_backoff",
    "plan",
    "plan_destroy",
    "random_names",
    "seeded_names",
    "template",
    "template_hash",
]
