"""A request's Neutron ports: found by their tags, created tagged, released by tag.

Ports are created by talprov (not by Nova from ``networks``) and tagged with
their request and index, so a boot that fails never leaves an untraceable port:
the next attempt finds them by tag and deprovision removes them by tag. A pass's
requests get their missing ports from ONE bulk create where Neutron takes tags
on create: Neutron makes every port of a bulk request or none, each tagged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from talprov.openstack.batching import each_as_needed
from talprov.openstack.client import OpenStackClient
from talprov.openstack.data import OpenStackData, PortSpec
from talprov.openstack.errors import refused_whole
from talprov.openstack.lookups import Lookups
from talprov.openstack.servers import PORT_KEY, owner_tags, request_tags, tag, tag_query
from talprov.openstack.state import OpenStackState
from talprov.openstack.tagging import NeutronTags
from talprov.providers.errors import InvalidRequest, NotFound, ProviderError
from talprov.providers.ownership import REQUEST_KEY
from talprov.providers.protocol import StepContext
from talprov.providers.types import StepResult

Ctx = StepContext[OpenStackData, OpenStackState]


@dataclass
class NewPort:
    """A port a request still needs: its place in the request's list and its body."""

    index: int
    network: str
    tags: list[str]
    attrs: dict[str, Any]


@dataclass
class Needed:
    """A request's ports: the ids of those that exist (by index), those to create."""

    ctx: Ctx
    found: dict[int, str] = field(default_factory=dict)
    new: list[NewPort] = field(default_factory=list)


def wire_body(port: NewPort) -> dict[str, Any]:
    """``port``'s create body as Neutron's API takes it (the SDK's attribute names
    translated), with its tags."""
    body = {key: value for key, value in port.attrs.items() if key != "security_group_ids"}
    if "security_group_ids" in port.attrs:
        body["security_groups"] = port.attrs["security_group_ids"]
    body["tags"] = port.tags
    return body


class Ports:
    """The port side of one OpenStack provider instance. Thread-safe as its client."""

    def __init__(self, client: OpenStackClient, tags: NeutronTags, names: Lookups) -> None:
        self.client = client
        self.tags = tags
        self._names = names

    def ensure_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        """ensure-ports for many requests: ONE list of the owner's tagged ports for
        all (none when :meth:`look_ahead` listed them in this pass), then ONE bulk
        create of every port still missing (where Neutron tags on create; else, or
        when the bulk create is refused, request by request).

        Crash safe as the single step: a port made before a crash carries its
        request's tags and is found in that list. Idempotent.
        """
        seen = [ctx.state.take_seen_ports() for ctx in ctxs]
        if any(ports is None for ports in seen):
            try:
                listed = self._by_request(ctxs)
            except ProviderError as exc:
                return [exc] * len(ctxs)
            seen = [listed[id(ctx)] for ctx in ctxs]
        ports_of = {id(ctx): ports or [] for ctx, ports in zip(ctxs, seen, strict=True)}
        # Sorting out what exists is CPU, unless this Neutron cannot tag on create:
        # then each request looks for untagged ports by name.
        adopting = not self._tags_on_create()
        outcomes: list[Needed | StepResult | BaseException] = list(each_as_needed(
            lambda ctx: self._needed(ctx, ports_of[id(ctx)]), ctxs, lambda _: adopting))
        pending = [o for o in outcomes if isinstance(o, Needed) and o.new]
        if len(pending) > 1 and self.tags.on_create("port"):
            try:
                self._create_many(pending)
            except ProviderError as exc:
                # Refused whole (Neutron made none), perhaps for one request's port
                # (an address taken, a group gone): each request tries alone below.
                # Otherwise the ports may exist: the next pass finds them by tag.
                if not refused_whole(exc):
                    held = {id(o) for o in pending}
                    outcomes = [exc if id(o) in held else o for o in outcomes]
        places = [i for i, o in enumerate(outcomes) if isinstance(o, Needed)]
        needed = {id(outcome.ctx): outcome for outcome in outcomes if isinstance(outcome, Needed)}
        # Only a request whose ports are still missing creates (one by one).
        finished = each_as_needed(lambda ctx: self._finish(ctx, needed[id(ctx)]),
                                  [needed_one.ctx for needed_one in needed.values()],
                                  lambda ctx: bool(needed[id(ctx)].new))
        for i, result in zip(places, finished, strict=True):
            outcomes[i] = result
        return [None if isinstance(o, Needed) else o for o in outcomes]

    def _tags_on_create(self) -> bool:
        """Whether ports may carry tags on create; False when the extension list
        cannot be read now (each request's own lookup then raises the error)."""
        try:
            return self.tags.on_create("port")
        except ProviderError:
            return False

    def look_ahead(self, ctxs: Sequence[Ctx]) -> None:
        """List the owner's tagged ports once now and note each request's on its state,
        so that ensure-ports later in this pass lists no more (this runs while the
        lookups it needs are on their way). Safe as a listing taken at ensure-ports:
        the pass holds these requests from before this listing, and no step before
        ensure-ports makes or removes ports. Raises what the listing raises."""
        listed = self._by_request(ctxs)
        for ctx in ctxs:
            ctx.state.see_ports(listed[id(ctx)])

    def _by_request(self, ctxs: Sequence[Ctx]) -> dict[int, list[dict[str, Any]]]:
        """ONE list of the owner's tagged ports: each context's (by ``id``) ports."""
        by_tag: dict[str, list[dict[str, Any]]] = {}
        for port in self._listed(owner_tags(ctxs[0].owner)):
            for port_tag in port.get("tags") or []:
                if port_tag.startswith(REQUEST_KEY + "="):
                    by_tag.setdefault(port_tag, []).append(port)
        return {id(ctx): by_tag.get(tag(REQUEST_KEY, ctx.request.id), []) for ctx in ctxs}

    def of_request(self, ctx: Ctx) -> list[Any]:
        query = tag_query(request_tags(ctx.owner, ctx.request.id))
        return self.client.list("list ports", self.client.network.ports, tags=query)

    def ensure(self, ctx: Ctx) -> None:
        """The request's ports: those this pass listed (see :meth:`look_ahead`) or
        listed now by tag, the rest created one by one."""
        listed = ctx.state.take_seen_ports()
        if listed is None:
            listed = self._listed(request_tags(ctx.owner, ctx.request.id))
        self._finish(ctx, self._needed(ctx, listed))

    def _listed(self, tags: list[str]) -> list[dict[str, Any]]:
        """The ports carrying all of ``tags``, as Neutron's JSON (no SDK objects)."""
        return self.client.list_json("list ports", "network", "/ports", "ports",
                                     tags=tag_query(tags))

    def _needed(self, ctx: Ctx, listed: list[dict[str, Any]]) -> Needed:
        """Which of the request's ports exist (``listed`` by tag, or adopted untagged)
        and the bodies of the others. Raises ``InvalidRequest`` for a bad spec."""
        existing: dict[str, str] = {}
        for port in listed:
            for port_tag in port.get("tags") or []:
                if port_tag.startswith(PORT_KEY + "="):
                    existing.setdefault(port_tag, str(port["id"]))
        needed = Needed(ctx)
        for index, spec in enumerate(ctx.data.port_specs()):
            index_tag = tag(PORT_KEY, str(index))
            tags = [*request_tags(ctx.owner, ctx.request.id), index_tag]
            found = existing.get(index_tag)
            if found is None:
                adopted = self.tags.adopt_untagged(
                    "port", self._sdk_ports, tags, name=f"{ctx.request.id}-{index}")
                found = None if adopted is None else str(adopted.id)
            if found is not None:
                needed.found[index] = found
            else:
                needed.new.append(NewPort(index, spec.network, tags, self._body(ctx, index,
                                                                                 spec)))
        return needed

    def _sdk_ports(self, **query: Any) -> Any:
        """The SDK's port list; the proxy looked up only when called (where Neutron
        cannot tag on create), since each ``client.network`` is a retried read."""
        return self.client.network.ports(**query)

    def _finish(self, ctx: Ctx, needed: Needed) -> StepResult:
        """Create what ``needed`` still lacks one by one, then record the port ids."""
        for port in needed.new:
            needed.found[port.index] = str(self._create(ctx, port).id)
            ctx.event(f"created port {needed.found[port.index]} on {port.network}")
        needed.new = []
        ctx.state.port_ids = [needed.found[i] for i in sorted(needed.found)]
        return None

    def _create_many(self, pending: Sequence[Needed]) -> None:
        """Every port ``pending`` lacks, in ONE bulk create (all made or none); each
        made port moves from its request's ``new`` to its ``found``. Raises what the
        create raises; nothing has moved then."""
        wanted = [(need, port) for need in pending for port in need.new]
        bodies = [wire_body(port) for _, port in wanted]
        # Plain JSON both ways: the SDK would build two objects per port.
        made = self.client.post_json("create ports", "network", "/ports", {"ports": bodies})
        by_name = {str(item.get("name")): str(item.get("id")) for item in made.get("ports") or []}
        for need, port in wanted:
            created = by_name.get(str(port.attrs["name"]))
            if created is not None:
                need.found[port.index] = created
                need.new.remove(port)
                need.ctx.event(f"created port {created} on {port.network}")

    def _body(self, ctx: Ctx, index: int, spec: PortSpec) -> dict[str, Any]:
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
        return attrs

    def _create(self, ctx: Ctx, port: NewPort) -> Any:
        attrs = port.attrs
        try:
            return self.tags.create(
                "port", port.tags, lambda extra: self.client.network.create_port(**attrs, **extra),
                release=lambda made: self.delete(str(made.id)), event=ctx.event)
        except (InvalidRequest, NotFound):
            # The network or a group may be gone (or recreated): resolve them afresh.
            self._names.forget(attrs["network_id"], *attrs.get("security_group_ids", []))
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
            cidrs = [str(found.cidr)]
        elif address is not None:
            cidrs = [str(s.cidr) for s in self.client.list(
                "list subnets", self.client.network.subnets, network_id=network_id)]
        if address is not None:
            # Checked before the port is made (Neutron answers a 400 otherwise):
            # only the CIDR, Neutron's own rules (network and broadcast addresses,
            # allocation pools) stay Neutron's.
            refuse_outside(address, cidrs)
            item["ip_address"] = address
        return item

    def release(self, ctx: Ctx) -> None:
        for port in self.of_request(ctx):
            self.delete(str(port.id))
        ctx.state.port_ids = []

    def delete(self, port_id: str) -> None:
        self.client.delete("delete port", lambda: self.client.network.delete_port(
            port_id, ignore_missing=False))


def refuse_outside(address: str, cidrs: Sequence[str]) -> None:
    """Raise ``InvalidRequest`` naming provider_data.ports when ``address`` is not an
    IP address or lies in none of ``cidrs``. Pure."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise InvalidRequest(f"fixed_ips: {address!r} is not an IP address",
                             field="provider_data.ports") from None
    if not any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in cidrs):
        where = ", ".join(cidrs) or "no subnet"
        raise InvalidRequest(f"fixed_ips: {address} is outside the subnet ({where})",
                             field="provider_data.ports")
