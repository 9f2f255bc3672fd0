"""The AWS provider's typed step state (persisted by the runner after every step)."""

from __future__ import annotations

from pydantic import Field

from talprov.providers.protocol import ProviderState


class AwsState(ProviderState):
    """What the AWS steps learned about one request (persisted after every step)."""

    image_id: str | None = None
    root_device_name: str | None = None
    import_task_id: str | None = None
    instance_types: list[str] = Field(default_factory=list)
    #: Random per request record; keeps ClientTokens unique when an id is reused.
    nonce: str = ""
    #: Whether the request/Name tags are on the instance (batch launches add them later).
    tagged: bool = False
    wait_checks: int = 0
