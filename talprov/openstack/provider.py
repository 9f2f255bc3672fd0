"""The OpenStack provider: Glance image, tagged ports, a Nova server with user_data.

Steps (each idempotent: it looks for what it would create, by tag or name, first):

1. ``resolve-image``   an existing image, or the factory image uploaded to Glance once
2. ``resolve-flavor``  the named flavor, or the smallest one that fits cpu/memory/disk;
   the floating IP pool and the zones checked (before anything is created)
3. ``ensure-server-group``  the named server group, created once with its policy
4. ``ensure-ports``    one tagged port per network (or per explicit port spec)
5. ``ensure-server``   the server, found by its request tag or created on those ports
6. ``wait-active``     BUILD → ACTIVE; ERROR → delete it; NoValidHost → next zone
7. ``ensure-floating-ip``  a tagged floating IP on the first port, when a pool is named

Ports are created by talprov (not by Nova from ``networks``) and tagged, so a
boot that fails (NoValidHost, quota) never leaves an untraceable port behind:
they are reused for the next zone and removed by tag on deprovision. What a
crash strands anyway (a port made just before the worker died, a floating IP a
half-done delete left) is found by the leak sweep (:mod:`talprov.openstack.sweep`).
Steps 5 and 6 boot the server: :mod:`talprov.openstack.boots`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, ClassVar

from pydantic import BaseModel

from talprov.openstack import images, sweep
from talprov.openstack.batching import each_as_needed, one_by_one, where_needed
from talprov.openstack.boots import ServerBoots
from talprov.openstack.client import OpenStackClient, connect
from talprov.openstack.config import OpenStackConfig
from talprov.openstack.data import OpenStackData
from talprov.openstack.floating_ips import FloatingIps
from talprov.openstack.lookups import Lookups, Resolved
from talprov.openstack.ports import Ports
from talprov.openstack.servers import (
    is_going,
    machine_of,
    owner_tags,
    request_tags,
    server_microversion,
    tag_query,
    user_data_of,
)
from talprov.openstack.state import OpenStackState
from talprov.openstack.tagging import NeutronTags
from talprov.providers.errors import ProviderError
from talprov.providers.protocol import (
    Leftover,
    ProviderState,
    Runtime,
    Step,
    StepContext,
    endpoint_without_secrets,
)
from talprov.providers.types import Health, Machine, MachineRequest, Owner, Retry, StepResult
from talprov.talos.assets import Platform, require_offered
from talprov.talos.join import RenderingPass, check_user_data, refuse_fixed_image
from talprov.talos.schematic import Schematic

Ctx = StepContext[OpenStackData, OpenStackState]
GONE_STATES = {"DELETED", "SOFT_DELETED"}


class OpenStackProvider:
    """Talos machines on an OpenStack cloud (Nova, Glance, Neutron)."""

    type_name: ClassVar[str] = "openstack"
    # Declared with the protocol's types so the class statically is a Provider.
    config_model: ClassVar[type[BaseModel]] = OpenStackConfig
    data_model: ClassVar[type[BaseModel]] = OpenStackData
    state_model: ClassVar[type[ProviderState]] = OpenStackState

    def __init__(
        self,
        name: str,
        config: OpenStackConfig,
        runtime: Runtime,
        *,
        connector: Callable[[OpenStackConfig], Any] = connect,
    ) -> None:
        self.name = name
        self.config = config
        self.runtime = runtime
        self.client = OpenStackClient(config, runtime.sleep, connector, instance=name)
        self.tags = NeutronTags(self.client)
        self._group_lock = threading.Lock()
        self._names = Lookups(self.client, runtime.clock)
        self.ports = Ports(self.client, self.tags, self._names)
        self.floating_ips = FloatingIps(self.client, self.tags, self._names)
        self.boots = ServerBoots(self.client, config, self.ports, self._names,
                                 self.list_machines)

    def __repr__(self) -> str:
        return f"OpenStackProvider({self.name!r})"

    def use_concurrency(self, calls: int) -> None:
        """Size the HTTP pools for ``calls`` steps at once, plus the listing and
        lookups that run beside them (``SharesConnections``)."""
        self.client.use_connections(calls + 2)

    def steps(self) -> Sequence[Step]:
        """The provisioning steps, in order. Each is idempotent."""
        return [
            # Every step takes the pass's requests together (most one by one), so
            # a set reaches ensure-ports at once and shares its one port list.
            # The steps up to ensure-ports neither read the listing nor make or
            # remove a server: they run while the pass's listing is on its way.
            # found_again: what a done step found or made (by name, key or tag) a
            # restart finds again, so only waits, failures and the end are stored.
            Step.batched("resolve-image", self._resolve_images, needs_listing=False,
                         found_again=True),
            # resolve-image looked the flavors up: no thread per request for them.
            Step("resolve-flavor", self._resolve_flavor,
                 where_needed(self._resolve_flavor, lambda ctx: not self._knows_names(ctx)),
                 needs_listing=False, found_again=True),
            # One request at a time anyway (see the step).
            Step("ensure-server-group", self._ensure_server_group,
                 where_needed(self._ensure_server_group, lambda _: False),
                 needs_listing=False, found_again=True),
            Step("ensure-ports", self._ensure_ports_step, self.ports.ensure_batch,
                 needs_listing=False, found_again=True),
            # The pass's listing shows a server a dead worker made: found, not remade.
            Step("ensure-server", self.boots.ensure_server,
                 one_by_one(self.boots.ensure_server), found_again=True,
                 creates_machine=True),
            # Done, it only saw the server ACTIVE (a rebuild in another zone waits).
            Step("wait-active", self.boots.wait_active, self.boots.wait_active_batch,
                 timeout=self.config.active_timeout, found_again=True),
            Step("ensure-floating-ip", self._ensure_floating_ip,
                 where_needed(self._ensure_floating_ip,
                              lambda ctx: ctx.data.floating_ip_pool is not None)),
        ]

    # -- 1. image ------------------------------------------------------------------------

    def _resolve_images(self, ctxs: Sequence[Ctx]) -> list[StepResult | BaseException]:
        """resolve-image for many; first every name the steps up to ensure-ports
        need (image, flavor, networks, groups, Neutron's extensions) and the
        owner's tagged ports (``Ports.look_ahead``) are fetched side by side, so
        those steps wait for no lookup one after another."""
        self._names.warm(
            [ctx.data for ctx in ctxs],
            also=[self.tags.aliases, lambda: self.ports.look_ahead(ctxs)],
            # Rendering is CPU: done in this thread while the lookups are on
            # their way, not between the server creates (kept for this pass only).
            meanwhile=lambda: self._render_ahead(ctxs))
        # Only an image from the factory may still cost calls (an upload).
        return each_as_needed(self._resolve_image, ctxs, lambda ctx: (
            ctx.state.image_id is None and ctx.data.image is None))

    @staticmethod
    def _render_ahead(ctxs: Sequence[Ctx]) -> None:
        # A set's requests share a config: read once here, dropped with this call.
        rendering = RenderingPass()
        for ctx in ctxs:
            # A config that does not render fails its request at ensure-server,
            # which renders again and raises there.
            with suppress(ProviderError):
                ctx.state.keep_user_data(user_data_of(ctx.request, rendering))

    def _resolve_image(self, ctx: Ctx) -> StepResult:
        if ctx.state.image_id is not None:
            return None
        refuse_fixed_image(ctx.request, "provider_data.image", ctx.data.image)
        if ctx.data.image is not None:
            ctx.state.image_id = self._names.image(ctx.data.image)
        else:
            request = ctx.request
            # The key is local (no factory call): the schematic's id, version and arch.
            key = (f"{request.talos_version}/{request.arch}/"
                   f"{Schematic.from_request(request).id()}/{request.secure_boot}")
            ctx.state.image_id = self._names.get("factory image", key, lambda: Resolved(
                images.ensure_image(self.client, self.config, self.runtime, request), key)).id
        ctx.event(f"image {ctx.state.image_id}")
        return None

    # -- 2. flavor -----------------------------------------------------------------------

    def _resolve_flavor(self, ctx: Ctx) -> StepResult:
        data = ctx.data
        # Checked here, before ports and server exist: Neutron would refuse an
        # unknown pool only at the last step, leaving both behind; Nova an
        # unknown zone only at the server create.
        if data.floating_ip_pool is not None:
            self._names.floating_ip_pool(data.floating_ip_pool)
        self._names.check_zones(data.availability_zone)
        if ctx.state.flavor_id is not None:
            return None
        if data.flavor is not None:
            flavor = self._names.flavor(data.flavor)
        else:
            flavor = self._names.fitting_flavor(data)
        ctx.state.flavor_id = flavor.id
        ctx.event(f"flavor {flavor.label}")
        return None

    def _knows_names(self, ctx: Ctx) -> bool:
        """Whether resolve-flavor has every answer cached: it makes no call then."""
        pool = ctx.data.floating_ip_pool
        return ((ctx.state.flavor_id is not None or self._names.knows_flavor(ctx.data))
                and (pool is None or self._names.knows("floating IP pool", pool))
                and (not ctx.data.availability_zone or self._names.knows_zones()))

    # -- 3. server group -------------------------------------------------------------------

    def _ensure_server_group(self, ctx: Ctx) -> StepResult:
        name = ctx.data.server_group
        if name is None or ctx.state.server_group_id is not None:
            return None
        # One group per name: requests of one set in this process must not race.
        with self._group_lock:
            groups = self.client.list("list server groups", self.client.compute.server_groups)
            found = sorted((g for g in groups if g.name == name), key=lambda g: str(g.id))
            if found:
                group = found[0]
            else:
                group = self.client.write("create server group", lambda: (
                    self.client.compute.create_server_group(
                        name=name, policy=ctx.data.server_group_policy)))
                ctx.event(f"created server group {name} ({ctx.data.server_group_policy})")
        ctx.state.server_group_id = str(group.id)
        return None

    # -- 4. ports --------------------------------------------------------------------------

    def _ensure_ports_step(self, ctx: Ctx) -> StepResult:
        self.ports.ensure(ctx)
        return None

    # -- 5. server and 6. wait: ServerBoots (talprov.openstack.boots) ------------------------

    # -- 7. floating IP --------------------------------------------------------------------

    def _ensure_floating_ip(self, ctx: Ctx) -> StepResult:
        self.floating_ips.ensure(ctx)
        return None

    # -- deprovision -------------------------------------------------------------------------

    def deprovision(self, ctx: Ctx) -> StepResult:
        """Delete the server, then its tagged floating IPs and ports.

        Idempotent: what is already gone is success. Returns ``Retry`` while Nova
        is still deleting the server (its ports stay bound until then).
        """
        query = tag_query(request_tags(ctx.owner, ctx.request.id))
        servers = [s for s in self.client.list("list servers", self.client.compute.servers,
                                               tags=query) if s.status not in GONE_STATES]
        recorded = ctx.state.server_id
        if recorded is not None and recorded not in {s.id for s in servers}:
            self.boots.delete_server(recorded)
        # Asked once is enough: from here on the tag listing shows what is left.
        ctx.state.server_id = None
        if servers:
            for server in servers:
                if not is_going(server):
                    self.boots.delete_server(str(server.id))
                    ctx.event(f"deleting server {server.id}")
            return Retry(after=self.config.poll_interval, reason="server deleting")
        self.floating_ips.release(ctx)
        port_ids = {str(p.id) for p in self.ports.of_request(ctx)} | set(ctx.state.port_ids)
        for port_id in sorted(port_ids):
            self.ports.delete(port_id)
        ctx.state.port_ids = []
        ctx.state.server_id = None
        return None

    # -- observe -----------------------------------------------------------------------------

    def list_machines(self, owner: Owner) -> list[Machine]:
        """Every server this installation owns for this instance: ONE filtered list.

        Read-only and idempotent. Raises ``AuthError`` or ``Transient``.
        """
        # The first pass's steps need Glance and Neutron next: find their
        # endpoints while this listing runs, not one after another later.
        servers = self.client.reaching(("image", "network"), lambda: self.client.list_json(
            "list servers", "compute", "/servers/detail", "servers",
            microversion=server_microversion, tags=tag_query(owner_tags(owner))))
        return [machine_of(s) for s in servers if s.get("status") not in GONE_STATES]

    # -- leak sweep (SweepsLeftovers) ----------------------------------------------------------

    def list_leftovers(self, owner: Owner) -> list[Leftover]:
        """This owner's detached tagged ports and unassociated tagged floating IPs:
        one port list and one floating-IP list. Read-only and idempotent. Raises
        ``AuthError`` or ``Transient``.
        """
        return sweep.list_leftovers(self.client, owner)

    def delete_leftover(self, owner: Owner, leftover: Leftover) -> None:
        """Delete one leftover unless it is in use again, not ``owner``'s, or already
        gone (success). Idempotent. Raises ``AuthError`` or ``Transient``.
        """
        sweep.delete_leftover(self.client, owner, leftover)

    def check_request(self, request: MachineRequest) -> None:
        """Pre-flight (no API call): the machine config renders as user-data and,
        unless it boots an image of the user's, the factory has an openstack image
        for its arch, version and secure boot.

        Raises ``InvalidRequest`` (``machine_config``, ``arch``, ``secure_boot``).
        Idempotent.
        """
        check_user_data(request)
        if not request.provider_data.get("image"):
            require_offered(Platform.OPENSTACK, request)

    def endpoint(self) -> str:
        """Keystone's URL when given in the config, else the clouds.yaml cloud's name."""
        if self.config.auth is not None:
            return endpoint_without_secrets(self.config.auth.auth_url)
        return f"cloud {self.config.cloud}" if self.config.cloud else "the OS_* environment"

    def health(self) -> Health:
        """Whether the cloud answers with these credentials. Never raises."""
        def authorize() -> Any:
            # Connecting happens inside the retried, translated call, not before it.
            return self.client.conn.authorize()

        try:
            self.client.read("authenticate", authorize)
            zones = self.client.list("list zones", self.client.compute.availability_zones)
        except ProviderError as exc:
            return Health(ok=False, message=str(exc))
        except Exception as exc:  # health must never raise
            return Health(ok=False, message=f"{type(exc).__name__}")
        return Health(ok=True, message=f"{len(zones)} availability zones")

