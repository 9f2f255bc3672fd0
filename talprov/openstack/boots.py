"""The OpenStack steps that boot a server: ``ensure-server`` and ``wait-active``.

A server is found before it is made: by the pass's listing, by the id the
request recorded, or by its request tag (a worker that died after Nova took
the create). A build that ends in ERROR is deleted; NoValidHost moves on to the
next availability zone (:func:`talprov.openstack.servers.zone_order`), any
other fault fails the request. A server created in this pass is not looked at
with a GET of its own: the next listing, one for all of them, shows it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from talprov.openstack.batching import each_as_needed
from talprov.openstack.client import OpenStackClient
from talprov.openstack.config import OpenStackConfig
from talprov.openstack.data import OpenStackData
from talprov.openstack.errors import ServerBuildFailed, is_no_valid_host, scrub
from talprov.openstack.lookups import Lookups
from talprov.openstack.ports import Ports
from talprov.openstack.servers import (
    is_going,
    request_tags,
    server_body,
    server_microversion,
    tag_query,
    to_machine,
    zone_order,
)
from talprov.openstack.state import OpenStackState
from talprov.providers.errors import (
    CapacityError,
    InvalidRequest,
    NotFound,
    ProviderError,
    Transient,
)
from talprov.providers.protocol import StepContext
from talprov.providers.types import Machine, Owner, Retry, StepResult

Ctx = StepContext[OpenStackData, OpenStackState]
#: Seconds before the first look at a server created in this pass.
FIRST_LOOK_AFTER = 1.0


class _ServerView:
    """The few server facts the wait step needs, from a listing or a GET alike."""

    def __init__(self, machine: Machine) -> None:
        self.status = machine.extra.get("status", "UNKNOWN")
        self.fault = machine.extra.get("fault")
        self.addresses = machine.addresses


class ServerBoots:
    """ensure-server and wait-active of one provider instance.

    ``listing`` is the instance's ``list_machines``: wait-active takes ONE fresh
    listing for the servers created in this pass. Thread-safe.
    """

    def __init__(self, client: OpenStackClient, config: OpenStackConfig, ports: Ports,
                 names: Lookups, listing: Callable[[Owner], list[Machine]]) -> None:
        self.client = client
        self.config = config
        self.ports = ports
        self._names = names
        self._listing = listing
        # Servers this instance created and has not looked at since: the pass's
        # listing predates them, so the first look waits for the next listing.
        self._unseen: set[str] = set()
        self._unseen_lock = threading.Lock()

    def delete_server(self, server_id: str) -> None:
        """Ask Nova to delete ``server_id``. Raises ``NotFound`` when it is gone,
        ``AuthError`` or ``Transient``."""
        self.client.delete("delete server", lambda: self.client.compute.delete_server(
            server_id, ignore_missing=False))

    # -- ensure-server ---------------------------------------------------------------------

    def ensure_server(self, ctx: Ctx) -> StepResult:
        """ensure-server: the request's server, found or created. Idempotent."""
        listed = self._listed_server(ctx)
        if listed is not None:
            self._record_server(ctx, listed.infra_id)
            return None
        if ctx.state.server_id is None or self._current_server(ctx) is None:
            # The pass's listing (taken after any earlier worker of this request
            # died or let go) shows no server for it: create one.
            self._create_server(ctx)
        return None

    @staticmethod
    def _listed_server(ctx: Ctx) -> Machine | None:
        """The request's server as the pass's listing shows it, unless discarded or going."""
        observed = ctx.observed
        if observed is None or observed.infra_id in ctx.state.discarded_servers:
            return None
        if observed.extra.get("task_state") == "deleting":
            return None
        return observed

    def _current_server(self, ctx: Ctx) -> Any:
        """This request's live server: the recorded one, else the one carrying its tag."""
        if ctx.state.server_id is not None:
            try:
                server = self.client.read("get server", lambda: self.client.compute.get_server(
                    ctx.state.server_id))
            except NotFound:
                server = None
            if server is not None and not is_going(server):
                return server
            ctx.state.server_id = None
        query = tag_query(request_tags(ctx.owner, ctx.request.id))
        found = [s for s in self.client.list("list servers", self.client.compute.servers,
                                             tags=query)
                 if s.id not in ctx.state.discarded_servers and not is_going(s)]
        if not found:
            return None
        server = min(found, key=lambda s: str(s.created_at))
        self._record_server(ctx, str(server.id))
        return server

    @staticmethod
    def _record_server(ctx: Ctx, server_id: str) -> None:
        ctx.state.server_id = ctx.state.infra_id = ctx.state.machine_uuid = server_id

    def _create_server(self, ctx: Ctx) -> None:
        """Boot the server in the zone this attempt has reached. Not retried here."""
        zones = zone_order(ctx.request.id, ctx.data.availability_zone)
        if ctx.state.zone_attempt >= len(zones):
            ctx.state.zone_attempt = 0
        zone = zones[ctx.state.zone_attempt]
        if not ctx.state.port_ids:  # released after a failed build, or never made
            self.ports.ensure(ctx)
        body = server_body(ctx, zone)
        try:
            # Plain JSON both ways: the SDK builds two server objects per create,
            # which cost more CPU than the call itself.
            created = self.client.post_json("create server", "compute", "/servers", body,
                                            microversion=server_microversion)
        except ProviderError as exc:
            scrubbed = scrub(exc, body["server"]["user_data"])
            if isinstance(exc, (InvalidRequest, NotFound)):
                # The image or flavor may be gone (or recreated): resolve them afresh.
                self._names.forget(str(ctx.state.image_id), str(ctx.state.flavor_id))
            if not isinstance(exc, Transient):
                # Quota or a rejected request: do not hold ports while the set backs off.
                self.ports.release(ctx)
            if scrubbed:
                # The API quoted the user_data (Nova does for some 400s): drop the SDK
                # exception too, it carries the same text.
                raise exc from None
            raise
        server_id = str(created["server"]["id"])
        self._record_server(ctx, server_id)
        with self._unseen_lock:
            self._unseen.add(server_id)
        ctx.event(f"created server {server_id}" + (f" in {zone}" if zone else ""))

    # -- wait-active -----------------------------------------------------------------------

    def wait_active_batch(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        """wait-active for many: servers created in this pass get ONE fresh listing
        together (not a GET each), then each request is judged as alone. Read-only
        apart from what ``wait_active`` does; idempotent."""
        with self._unseen_lock:
            fresh = [c for c in ctxs if c.state.server_id in self._unseen]
        if fresh:
            try:
                listed = {m.infra_id: m for m in self._listing(ctxs[0].owner)}
            except ProviderError as exc:
                return [exc] * len(ctxs)
            for ctx in fresh:
                if ctx.state.server_id in listed:
                    ctx.observed = listed[str(ctx.state.server_id)]
        return each_as_needed(self.wait_active, ctxs, self._may_call_while_waiting)

    @staticmethod
    def _may_call_while_waiting(ctx: Ctx) -> bool:
        """Whether wait-active may call the cloud for ``ctx``: not when the pass's
        listing shows its server in a state other than ERROR."""
        observed = ctx.observed
        return (observed is None or observed.infra_id != ctx.state.server_id
                or observed.extra.get("status") == "ERROR")

    def wait_active(self, ctx: Ctx) -> StepResult:
        """wait-active: None once the server is ACTIVE, ``Retry`` while it builds.
        A build in ERROR is deleted: NoValidHost boots again in the next zone
        (``CapacityError`` once every zone refused), another fault raises
        ``ServerBuildFailed``. Idempotent."""
        with self._unseen_lock:
            fresh = ctx.state.server_id in self._unseen
            self._unseen.discard(str(ctx.state.server_id))
        if fresh and not (ctx.observed and ctx.observed.infra_id == ctx.state.server_id):
            # Created in this pass and not listed yet: no GET, the next listing shows it.
            return Retry(after=min(FIRST_LOOK_AFTER, self.config.poll_interval),
                         reason="server created")
        server = self._observed_or_fetched(ctx)
        if server is None:
            # Deleted under us, or a create that failed last time: boot (again).
            self._create_server(ctx)
            return Retry(after=self.config.poll_interval, reason="server created")
        status = server.status
        if status == "ACTIVE":
            ctx.state.addresses = list(server.addresses)
            ctx.event(f"server {ctx.state.server_id} active")
            return None
        if status == "ERROR":
            return self._failed_build(ctx, server.fault)
        # Soon at first, then as long again as it has taken so far, up to poll_interval.
        after = min(self.config.poll_interval, max(FIRST_LOOK_AFTER, ctx.elapsed()))
        return Retry(after=after, reason=f"server {ctx.state.server_id} still {status}")

    def _observed_or_fetched(self, ctx: Ctx) -> _ServerView | None:
        """The server as this pass's listing saw it, or one GET when it did not see it."""
        observed = ctx.observed
        if observed is not None and observed.infra_id == ctx.state.server_id:
            return _ServerView(observed)
        server = self._current_server(ctx)
        return None if server is None else _ServerView(to_machine(server))

    def _failed_build(self, ctx: Ctx, fault: str | None) -> StepResult:
        server_id = ctx.state.server_id
        message = fault or "no fault message"
        ctx.state.last_fault = message
        if server_id is not None:
            self.delete_server(server_id)
            ctx.state.discarded_servers = [*ctx.state.discarded_servers, server_id]
        ctx.state.server_id = ctx.state.infra_id = ctx.state.machine_uuid = None
        ctx.event(f"server {server_id} failed: {message}; deleted")
        if not is_no_valid_host(message):
            self.ports.release(ctx)
            raise ServerBuildFailed(f"server build failed: {message}")
        zones = zone_order(ctx.request.id, ctx.data.availability_zone)
        ctx.state.zone_attempt += 1
        if ctx.state.zone_attempt >= len(zones):
            ctx.state.zone_attempt = 0
            self.ports.release(ctx)
            tried = ", ".join(z for z in zones if z) or "the default zone"
            raise CapacityError(f"no valid host in {tried}: {message}")
        ctx.event(f"no valid host; trying zone {zones[ctx.state.zone_attempt]}")
        self._create_server(ctx)
        return Retry(after=self.config.poll_interval, reason="retrying in the next zone")
