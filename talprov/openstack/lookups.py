"""Names resolved once per provider instance: images, flavors, networks, security
groups, floating IP pools, and the availability zones offered.

Every request of a set names the same image, flavor and network; asking the
cloud for each of them per server (the SDK's ``find_*`` costs two calls: a GET by
name that 404s, then a filtered list) was a quarter of all calls. A name's
answer is kept for ``ttl`` seconds on the runtime's clock and dropped at once
when the cloud says a resource it points to is not found (deleted and perhaps
recreated under the same name), so a stale id costs one failed call, not a
failed request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any

from talprov.daemon_pool import DaemonPool
from talprov.openstack import images
from talprov.openstack.client import OpenStackClient
from talprov.openstack.data import OpenStackData
from talprov.providers.errors import (
    AuthError,
    InstanceUnavailable,
    InvalidRequest,
    NotFound,
    ProviderError,
    Transient,
)

#: Seconds a resolved name is trusted.
DEFAULT_TTL = 300.0
#: Lookups :meth:`Lookups.warm` runs side by side.
WARM_WORKERS = 8


@dataclass(frozen=True)
class Resolved:
    """What a name resolved to: its id and the label events show."""

    id: str
    label: str


class NameCache:
    """Thread-safe cache of (kind, name) → :class:`Resolved`, with a TTL.

    One name is resolved by one thread at a time (the others wait for its
    answer); different names resolve side by side.
    """

    def __init__(self, clock: Callable[[], float], ttl: float = DEFAULT_TTL) -> None:
        self._clock = clock
        self._ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[Resolved, float]] = {}
        self._resolving: dict[tuple[str, str], threading.Lock] = {}

    def get(self, kind: str, name: str, resolve: Callable[[], Resolved]) -> Resolved:
        """The cached answer for ``name``, else ``resolve()``'s (then cached).

        Raises whatever ``resolve`` raises; nothing is cached then.
        """
        key = (kind, name)
        with self._lock:
            one_at_a_time = self._resolving.setdefault(key, threading.Lock())
        with one_at_a_time:
            now = self._clock()
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry[1] > now:
                    return entry[0]
            found = resolve()
            with self._lock:
                self._entries[key] = (found, now + self._ttl)
            return found

    def knows(self, kind: str, name: str) -> bool:
        """Whether ``name`` has an answer within its TTL (:meth:`get` makes no call then)."""
        with self._lock:
            entry = self._entries.get((kind, name))
            return entry is not None and entry[1] > self._clock()

    def forget(self, *ids: str) -> None:
        """Drop every cached name that resolved to one of ``ids`` (a not-found on them)."""
        dropped = set(ids)
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if v[0].id not in dropped}



class Lookups(NameCache):
    """The cached lookups the OpenStack steps make, each one call (or two) per name."""

    def __init__(self, client: OpenStackClient, clock: Callable[[], float],
                 ttl: float = DEFAULT_TTL) -> None:
        super().__init__(clock, ttl)
        self.client = client
        self._zones: tuple[frozenset[str], float] | None = None

    def forget(self, *ids: str) -> None:
        """Drop the names that resolved to ``ids``, and the zone list: a refused
        create may be about a zone that is no longer offered."""
        super().forget(*ids)
        with self._lock:
            self._zones = None

    def zones(self) -> frozenset[str] | None:
        """The availability zones Nova offers now (``os-availability-zone``, the
        available ones), kept as long as a name. None when the cloud will not list
        them (a policy forbids it): Nova then judges the zone at create. Raises
        ``Transient`` and ``InstanceUnavailable``."""
        now = self._clock()
        with self._lock:
            if self._zones is not None and self._zones[1] > now:
                return self._zones[0]
        try:
            listed = self.client.list_json("list zones", "compute", "/os-availability-zone",
                                           "availabilityZoneInfo")
        except (AuthError, NotFound) as exc:
            if isinstance(exc, InstanceUnavailable):
                raise
            return None
        offered = frozenset(str(z["zoneName"]) for z in listed
                            if (z.get("zoneState") or {}).get("available"))
        with self._lock:
            self._zones = (offered, now + self._ttl)
        return offered

    def knows_zones(self) -> bool:
        """Whether :meth:`zones` has an answer within its TTL (it makes no call then)."""
        with self._lock:
            return self._zones is not None and self._zones[1] > self._clock()

    def check_zones(self, wanted: Iterable[str]) -> None:
        """Raise ``InvalidRequest`` naming provider_data.availability_zone when a zone
        in ``wanted`` is not offered (Nova would refuse the server create with a 400
        only after the ports were made). A ``zone:host`` entry is left to Nova,
        which does not check the zone of a forced host. Raises what :meth:`zones` raises."""
        checked = [zone for zone in wanted if ":" not in zone]
        offered = self.zones() if checked else None
        if offered is None:
            return
        unknown = [zone for zone in checked if zone not in offered]
        if unknown:
            raise InvalidRequest(
                f"no available zone {', '.join(map(repr, unknown))} (the cloud offers: "
                f"{', '.join(sorted(offered)) or 'none'})",
                field="provider_data.availability_zone")

    def _named(self, what: str, service: str, path: str, key: str,
               name: str) -> dict[str, Any] | None:
        """The one resource called ``name``, as the API's JSON: ONE filtered list (an
        SDK ``find_*`` first GETs the name as an id, a 404, then lists, and builds an
        object per item). None when no name matches (it may be an id). Raises
        ``InvalidRequest`` when several match."""
        found = [r for r in self.client.list_json(what, service, path, key, name=name)
                 if r.get("name") == name]
        if len(found) > 1:
            raise InvalidRequest(f"{len(found)} resources are named {name!r}; give the id")
        return found[0] if found else None

    def _flavors(self) -> list[dict[str, Any]]:
        return self.client.list_json("list flavors", "compute", "/flavors/detail", "flavors")

    def image(self, name_or_id: str) -> str:
        """The id of an existing active image. Raises ``InvalidRequest``/``Transient``."""
        def find() -> Resolved:
            image = self._named("list images", "image", "/images", "images", name_or_id)
            if image is None:
                return Resolved(images.resolve_named_image(self.client, name_or_id), name_or_id)
            if image.get("status") != "active":
                raise Transient(f"Glance image {name_or_id!r} is {image.get('status')}, "
                                "not active")
            return Resolved(str(image["id"]), name_or_id)

        return self.get("image", name_or_id, find).id

    def flavor(self, name_or_id: str) -> Resolved:
        """The flavor with this id, else the one with this name: ONE list of flavors
        (``find_flavor`` GETs the name as an id first, a 404). Raises
        ``InvalidRequest`` naming provider_data.flavor when none or several match."""
        def find() -> Resolved:
            flavors = self._flavors()
            found = [f for f in flavors if f.get("id") == name_or_id] or [
                f for f in flavors if f.get("name") == name_or_id]
            if len(found) != 1:
                what = "no flavor" if not found else f"{len(found)} flavors are named"
                raise InvalidRequest(f"{what} {name_or_id!r}", field="provider_data.flavor")
            return Resolved(str(found[0]["id"]), str(found[0]["name"]))

        return self.get("flavor", name_or_id, find)

    def fitting_flavor(self, data: OpenStackData) -> Resolved:
        """The smallest flavor with data's cpu, memory (and disk unless it boots from a
        volume); ties broken by name. Raises ``InvalidRequest`` when none fits."""
        def choose() -> Resolved:
            fitting = [f for f in self._flavors()
                       if f["vcpus"] >= (data.cpu or 0) and f["ram"] >= (data.memory or 0)
                       and (data.root_volume is not None or f["disk"] >= (data.disk or 0))]
            if not fitting:
                raise InvalidRequest(f"no flavor has {data.cpu} vCPUs, {data.memory} MiB and "
                                     f"{data.disk} GiB", field="provider_data.cpu")
            flavor = min(fitting, key=lambda f: (f["vcpus"], f["ram"], f["disk"], str(f["name"])))
            return Resolved(str(flavor["id"]), str(flavor["name"]))

        return self.get("fitting flavor", _fits(data), choose)

    def knows_flavor(self, data: OpenStackData) -> bool:
        """Whether data's flavor (named or fitting) is cached: resolving it makes no call."""
        if data.flavor is not None:
            return self.knows("flavor", data.flavor)
        return self.knows("fitting flavor", _fits(data))

    def network(self, name_or_id: str) -> Resolved:
        """A network. Raises ``InvalidRequest`` naming provider_data.networks."""
        return self.get("network", name_or_id,
                        partial(self._network, name_or_id, "provider_data.networks"))

    def floating_ip_pool(self, name_or_id: str) -> Resolved:
        """The network floating IPs are taken from. Raises ``InvalidRequest`` naming
        provider_data.floating_ip_pool, so that a request naming none fails before
        its ports and server are made, not once the server is ACTIVE."""
        return self.get("floating IP pool", name_or_id,
                        partial(self._network, name_or_id, "provider_data.floating_ip_pool"))

    def _network(self, name_or_id: str, field: str) -> Resolved:
        named = self._named("list networks", "network", "/networks", "networks", name_or_id)
        if named is not None:
            return Resolved(str(named["id"]), name_or_id)
        net = self.client.find_one("find network", self.client.network.find_network,
                                   name_or_id)
        if net is None:
            raise InvalidRequest(f"no network {name_or_id!r}", field=field)
        return Resolved(str(net.id), name_or_id)

    def security_group(self, name_or_id: str) -> Resolved:
        """A security group. Raises ``InvalidRequest`` naming provider_data.security_groups."""
        def find() -> Resolved:
            group = self.client.find_one("find security group",
                                         self.client.network.find_security_group, name_or_id)
            if group is None:
                raise InvalidRequest(f"no security group {name_or_id!r}",
                                     field="provider_data.security_groups")
            return Resolved(str(group.id), name_or_id)

        return self.get("security group", name_or_id, find)

    def warm(self, datas: Iterable[OpenStackData],
             also: Iterable[Callable[[], object]] = (),
             meanwhile: Callable[[], object] | None = None) -> None:
        """Resolve every name ``datas`` use (existing image, flavor, networks,
        security groups, floating IP pool, zones) and run ``also``, all side by
        side, so that the steps after this one find them cached instead of
        asking one after another; ``meanwhile`` (CPU work) runs in this thread
        while they are on their way.

        A lookup that fails is not cached: the step that needs it asks again and
        raises the error there. Never raises a ``ProviderError``; raises what
        ``meanwhile`` raises, once the lookups are done.
        """
        tasks: dict[tuple[str, str], Callable[[], object]] = {}
        for data in datas:
            if data.image is not None:
                tasks[("image", data.image)] = partial(self.image, data.image)
            if data.flavor is not None:
                tasks[("flavor", data.flavor)] = partial(self.flavor, data.flavor)
            else:
                tasks[("fits", repr(data))] = partial(self.fitting_flavor, data)
            if data.availability_zone:
                tasks[("zones", "")] = self.zones
            if data.floating_ip_pool is not None:
                tasks[("pool", data.floating_ip_pool)] = partial(
                    self.floating_ip_pool, data.floating_ip_pool)
            for spec in data.port_specs():
                tasks[("network", spec.network)] = partial(self.network, spec.network)
                groups = spec.security_groups if spec.security_groups is not None else (
                    data.security_groups)
                for group in groups:
                    tasks[("group", group)] = partial(self.security_group, group)
        work = [*tasks.values(), *also]

        def attempt(task: Callable[[], object]) -> None:
            with suppress(ProviderError):  # raised again by the step that needs it
                task()

        if len(work) <= 1:
            for task in work:
                attempt(task)
            if meanwhile is not None:
                meanwhile()
            return
        with DaemonPool(min(WARM_WORKERS, len(work)), "talprov-warm") as pool:
            done = pool.map(attempt, work)
            if meanwhile is not None:
                meanwhile()
            list(done)


def _fits(data: OpenStackData) -> str:
    """The cache key of the flavor that fits ``data``'s sizes."""
    return f"{data.cpu}/{data.memory}/{data.disk}/{data.root_volume is not None}"
