"""The OpenStack provider's typed step state (persisted by the runner after every step)."""

from __future__ import annotations

from pydantic import Field

from talprov.providers.protocol import ProviderState


class OpenStackState(ProviderState):
    """What the steps have learned or created so far for one request."""

    image_id: str | None = None
    flavor_id: str | None = None
    server_group_id: str | None = None
    port_ids: list[str] = Field(default_factory=list)
    server_id: str | None = None
    #: Zones already tried in this attempt (NoValidHost moves to the next one).
    zone_attempt: int = 0
    #: Servers this request deleted after a failed build; ignored when found by tag.
    discarded_servers: list[str] = Field(default_factory=list)
    floating_ip_id: str | None = None
    last_fault: str | None = None
