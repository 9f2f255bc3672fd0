"""The provider contract: everything a driver (built in or a plugin) needs, and nothing else.

A plugin author imports this package and nothing else from talprov::

    from talprov.providers import Provider, Step, StepContext, Retry, Transient

It depends on no other part of talprov: the reconciler, the store, the scaler
and the service sit above it and are reached only through what is declared
here (see docs/architecture.md for the layers). Drivers register their class
under the ``talprov.providers`` entry-point group.
"""

from talprov.providers.errors import (
    AuthError,
    CapacityError,
    InvalidRequest,
    NotFound,
    ProviderError,
    QuotaExceeded,
    StepTimeout,
    Transient,
)
from talprov.providers.ownership import (
    INSTALLATION_KEY,
    INSTANCE_KEY,
    LABEL_PREFIX,
    REQUEST_KEY,
    is_owned,
    labels_from_tags,
    ownership_tags,
)
from talprov.providers.protocol import (
    BatchStepFn,
    ChecksRequests,
    Leftover,
    NamesEndpoint,
    Provider,
    ProviderClass,
    ProviderState,
    RemovesSecondMachines,
    Runtime,
    Step,
    StepContext,
    StepFn,
    SweepsLeftovers,
    endpoint_without_secrets,
)
from talprov.providers.retry import RetryPolicy, call_with_retry
from talprov.providers.types import (
    Arch,
    GrpcTunnelMode,
    Health,
    JoinSpec,
    Machine,
    MachineRequest,
    MachineState,
    MetaValue,
    Overlay,
    Owner,
    Retry,
    Stage,
    StepResult,
)

__all__ = [
    "INSTALLATION_KEY", "INSTANCE_KEY", "LABEL_PREFIX", "REQUEST_KEY",
    "Arch", "AuthError", "BatchStepFn", "CapacityError", "ChecksRequests", "GrpcTunnelMode",
    "Health", "InvalidRequest", "JoinSpec", "Leftover", "Machine", "MachineRequest",
    "MachineState", "MetaValue", "NamesEndpoint", "NotFound", "Overlay", "Owner", "Provider",
    "ProviderClass", "ProviderError", "ProviderState", "QuotaExceeded", "RemovesSecondMachines",
    "Retry", "RetryPolicy", "Runtime", "Stage", "Step", "StepContext", "StepFn", "StepResult",
    "StepTimeout", "SweepsLeftovers", "Transient", "call_with_retry", "endpoint_without_secrets",
    "is_owned", "labels_from_tags", "ownership_tags",
]
