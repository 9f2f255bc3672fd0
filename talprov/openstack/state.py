"""The OpenStack provider's typed step state (persisted by the runner after every step)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, PrivateAttr

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
    #: The request's tagged ports as a listing of this pass showed them (see
    #: ``Ports.look_ahead``). Private, so never stored: a listing cannot outlive
    #: the pass (and the claim) it was taken in.
    _seen_ports: list[dict[str, Any]] | None = PrivateAttr(default=None)

    #: The server's user_data, rendered ahead while this pass waited for lookups.
    #: Private, so never stored (it holds the machine config's secrets).
    _user_data: str | None = PrivateAttr(default=None)

    def keep_user_data(self, user_data: str) -> None:
        """Keep the rendered user_data for this pass's server create."""
        self._user_data = user_data

    def take_user_data(self) -> str | None:
        """The user_data :meth:`keep_user_data` kept, once; None when none was kept."""
        kept, self._user_data = self._user_data, None
        return kept

    def see_ports(self, ports: list[dict[str, Any]]) -> None:
        """Note the request's tagged ports as a listing of this pass shows them."""
        self._seen_ports = ports

    def take_seen_ports(self) -> list[dict[str, Any]] | None:
        """The ports :meth:`see_ports` noted, once; None when none were noted."""
        seen, self._seen_ports = self._seen_ports, None
        return seen
