"""A request's Neutron ports: found by their tags, created tagged, released by tag.

Ports are created by talprov (not by Nova from ``networks``) and tagged with
their request and index, so a boot that fails never leaves an untraceable port:
the next attempt finds them by tag and deprovision removes them by tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from talprov.openstack.batching import each
from talprov.openstack.client import OpenStackClient
from talprov.openstack.data import OpenStackData, PortSpec
from talprov.openstack.lookups import Lookups
from talprov.openstack.servers import PORT_KEY, owner_tags, request_tags, tag, tag_query
from talprov.openstack.state import OpenStackState
from talprov.openstack.tagging import NeutronTags
from talprov.providers.errors import InvalidRequest, NotFound, ProviderError
from talprov.providers.ownership import REQUEST_KEY
from talprov.providers.protocol import StepContext
from talprov.providers.types import StepResult

Ctx = StepContext[OpenStackData, OpenStackState]


class Ports:
    """The port side of one OpenStack provider instance. Thread-safe as its client."""

    def __init__(self, client: OpenStackClient, tags: NeutronTags, names: Lookups) -> None:
        self.client = client
        self.tags = tags
        self._names = names

    def ensure_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        """ensure-ports for many requests: ONE list of the owner's tagged ports for all.

        Crash safe as the single step: a port made before a crash carries its
        request's tags and is found in that list. Idempotent.
        """
        try:
            owned = self.client.list("list ports", self.client.network.ports,
                                     tags=tag_query(owner_tags(ctxs[0].owner)))
        except ProviderError as exc:
            return [exc] * len(ctxs)
        by_request: dict[str, list[Any]] = {}
        for port in owned:
            for port_tag in port.tags or []:
                if port_tag.startswith(REQUEST_KEY + "="):
                    by_request.setdefault(port_tag, []).append(port)

        def ensure(ctx: Ctx) -> StepResult:
            self.ensure(ctx, by_request.get(tag(REQUEST_KEY, ctx.request.id), []))
            return None

        return each(ensure, ctxs)

    def of_request(self, ctx: Ctx) -> list[Any]:
        query = tag_query(request_tags(ctx.owner, ctx.request.id))
        return self.client.list("list ports", self.client.network.ports, tags=query)

    def ensure(self, ctx: Ctx, listed: list[Any] | None = None) -> None:
        """The request's ports: those ``listed`` (else listed now) by tag, the rest created."""
        specs = ctx.data.port_specs()
        existing: dict[str, Any] = {}
        for port in self.of_request(ctx) if listed is None else listed:
            for port_tag in port.tags or []:
                if port_tag.startswith(PORT_KEY + "="):
                    existing.setdefault(port_tag, port)
        port_ids: list[str] = []
        for index, spec in enumerate(specs):
            index_tag = tag(PORT_KEY, str(index))
            port = existing.get(index_tag) or self.tags.adopt_untagged(
                "port", self.client.network.ports,
                [*request_tags(ctx.owner, ctx.request.id), index_tag],
                name=f"{ctx.request.id}-{index}")
            if port is None:
                port = self._create(ctx, index, spec, index_tag)
                ctx.event(f"created port {port.id} on {spec.network}")
            port_ids.append(str(port.id))
        ctx.state.port_ids = port_ids

    def _create(self, ctx: Ctx, index: int, spec: PortSpec, index_tag: str) -> Any:
        net = self._names.network(spec.network)
        attrs: dict[str, Any] = {
            "network_id": net.id,
            "name": f"{ctx.request.id}-{index}",
            "description": "created by talprov",
        }
        groups = spec.security_groups if spec.security_groups is not None else (
            ctx.data.security_groups)
        if groups:
            attrs["security_group_ids"] = [self._names.security_group(g).id for g in groups]
        if spec.fixed_ips:
            attrs["fixed_ips"] = [self._fixed_ip(net.id, item.subnet, item.ip_address)
                                  for item in spec.fixed_ips]
        try:
            return self.tags.create(
                "port", [*request_tags(ctx.owner, ctx.request.id), index_tag],
                lambda extra: self.client.network.create_port(**attrs, **extra),
                release=lambda port: self.delete(str(port.id)), event=ctx.event)
        except (InvalidRequest, NotFound):
            # The network or a group may be gone (or recreated): resolve them afresh.
            self._names.forget(net.id, *attrs.get("security_group_ids", []))
            raise

    def _fixed_ip(self, network_id: str, subnet: str | None, address: str | None) -> dict[
            str, str]:
        item: dict[str, str] = {}
        if subnet is not None:
            found = self.client.find_one("find subnet", self.client.network.find_subnet, subnet)
            if found is None or found.network_id != network_id:
                raise InvalidRequest(f"no subnet {subnet!r} on that network",
                                     field="provider_data.ports")
            item["subnet_id"] = str(found.id)
        if address is not None:
            item["ip_address"] = address
        return item

    def release(self, ctx: Ctx) -> None:
        for port in self.of_request(ctx):
            self.delete(str(port.id))
        ctx.state.port_ids = []

    def delete(self, port_id: str) -> None:
        self.client.delete("delete port", lambda: self.client.network.delete_port(
            port_id, ignore_missing=False))
