"""A request's floating IP: found by its tags, created tagged on the first port,
released by tag.

Floating IPs have no name, so the description talprov gives them
(:func:`talprov.openstack.sweep.floating_ip_description`) is how an untagged one
is adopted where Neutron cannot tag on create, and how the leak sweep reads a
digested request id back.
"""

from __future__ import annotations

from talprov.openstack.client import OpenStackClient
from talprov.openstack.data import OpenStackData
from talprov.openstack.lookups import Lookups
from talprov.openstack.servers import request_tags, tag_query
from talprov.openstack.state import OpenStackState
from talprov.openstack.sweep import floating_ip_description
from talprov.openstack.tagging import NeutronTags
from talprov.providers.errors import InvalidRequest, NotFound
from talprov.providers.protocol import StepContext

Ctx = StepContext[OpenStackData, OpenStackState]


class FloatingIps:
    """The floating-IP side of one OpenStack provider instance. Thread-safe as its client."""

    def __init__(self, client: OpenStackClient, tags: NeutronTags, names: Lookups) -> None:
        self.client = client
        self.tags = tags
        self.names = names

    def ensure(self, ctx: Ctx) -> None:
        """The request's floating IP when its data names a pool: the one carrying its
        tags, else an untagged one of its (tagged now), else a new one on its first
        port. Records it and its address on the state. Idempotent. Raises
        ``InvalidRequest`` naming ``provider_data.floating_ip_pool`` for an unknown
        pool, and what the calls raise.
        """
        pool = ctx.data.floating_ip_pool
        if pool is None:
            return
        tags = request_tags(ctx.owner, ctx.request.id)
        description = floating_ip_description(ctx.request.id)
        found = self.client.list("list floating IPs", self.client.network.ips,
                                 tags=tag_query(tags))
        fip = found[0] if found else self.tags.adopt_untagged(
            "floating IP", self.client.network.ips, tags, description=description)
        if fip is None:
            # Resolved (and checked) with the other names before anything was made.
            net = self.names.floating_ip_pool(pool)
            try:
                fip = self.tags.create(
                    "floating IP", tags,
                    lambda extra: self.client.network.create_ip(
                        floating_network_id=net.id, port_id=ctx.state.port_ids[0],
                        description=description, **extra),
                    release=lambda made: self.delete(str(made.id)), event=ctx.event)
            except (InvalidRequest, NotFound):
                # The pool may be gone (or recreated): resolve it afresh next time.
                self.names.forget(net.id)
                raise
            ctx.event(f"floating IP {fip.floating_ip_address}")
        ctx.state.floating_ip_id = str(fip.id)
        if fip.floating_ip_address not in ctx.state.addresses:
            ctx.state.addresses = [*ctx.state.addresses, str(fip.floating_ip_address)]

    def release(self, ctx: Ctx) -> None:
        """Delete every floating IP carrying the request's tags. Idempotent (gone is
        success). Raises ``AuthError`` or ``Transient``."""
        query = tag_query(request_tags(ctx.owner, ctx.request.id))
        for fip in self.client.list("list floating IPs", self.client.network.ips, tags=query):
            self.delete(str(fip.id))

    def delete(self, fip_id: str) -> None:
        """Delete one floating IP; already gone is success."""
        self.client.delete("delete floating IP", lambda: self.client.network.delete_ip(
            fip_id, ignore_missing=False))
