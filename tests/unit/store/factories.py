"""Requests for the store tests, carrying canary secrets that must never leak."""

from __future__ import annotations

from typing import Any

from talprov.providers.types import MachineRequest

CANARY_CONFIG = "machine:\n  ca: {crt: CANARY-CONFIG-7f3a9c, key: CANARY-KEY-51d0e2}\n"
CANARY_JOIN = "https://omni.example:8090/?jointoken=CANARY-TOKEN-c0ffee"


def make_request(request_id: str = "web-1", **overrides: Any) -> MachineRequest:
    """A valid request carrying the canary secrets unless overridden."""
    fields: dict[str, Any] = {
        "id": request_id,
        "provider": "aws-dev",
        "talos_version": "v1.13.9",
        "extensions": ["siderolabs/iscsi-tools"],
        "kernel_args": ["console=ttyS0"],
        "machine_config": CANARY_CONFIG,
        "join": {"api_url": CANARY_JOIN, "mode": "kernel_args"},
        "labels": {"role": "worker", "cluster": "prod"},
        "provider_data": {"instance_type": "t3.large"},
    }
    fields.update(overrides)
    return MachineRequest.model_validate(fields)
