"""A thin, error-translating wrapper over one openstacksdk connection.

The SDK's own status-code retries are turned off (keystoneauth would otherwise
sleep and retry 503s by itself, and Glance calls five times): talprov retries
reads and idempotent deletes here with its jittered policy, and creates only at
step level, where each step looks for what it would create before creating it.
Every call goes through :func:`openstack_errors`, so callers only ever see
talprov errors.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from talprov.daemon_pool import DaemonPool
from talprov.openstack.catalog import missing_endpoint, token_catalog
from talprov.openstack.config import OpenStackConfig
from talprov.openstack.errors import openstack_errors
from talprov.providers.errors import NotFound, ProviderError
from talprov.providers.retry import RetryPolicy, call_with_retry

T = TypeVar("T")

READ_POLICY = RetryPolicy(attempts=4, initial=0.5, maximum=10.0, deadline=60.0)


def connect(config: OpenStackConfig) -> Any:
    """An ``openstack.connection.Connection`` for ``config`` (authenticates lazily).

    Raises ``AuthError`` for an unusable cloud configuration.
    """
    import openstack

    options: dict[str, Any] = {
        "region_name": config.region,
        "interface": config.interface,
        "api_timeout": config.api_timeout,
        "status_code_retries": 0,
        "image_status_code_retries": 0,
        "connect_retries": 0,
        "app_name": "talprov",
    }
    if config.insecure:
        options["verify"] = False
    elif config.ca_file is not None:
        options["cacert"] = config.ca_file
        options["verify"] = True
    else:
        options["verify"] = True
    auth_url = config.auth.auth_url if config.auth is not None else None
    with openstack_errors("connecting to the cloud", endpoint=auth_url,
                          ca_file=config.ca_file):
        if config.auth is not None:
            return openstack.connect(
                auth=config.auth.to_sdk(),
                auth_type=config.auth.auth_type,
                load_yaml_config=False,
                load_envvars=False,
                **options,
            )
        # clouds.yaml and OS_* variables, exactly as the openstack CLI reads them.
        return openstack.connect(cloud=config.cloud, **options)


#: Connections kept per endpoint when nobody said how many steps run at once
#: (requests' own default).
DEFAULT_POOL = 10


def _size_pools(conn: Any, connections: int) -> None:
    """Give the connection's HTTP session pools of ``connections`` per host.

    keystoneauth mounts requests adapters of 10 connections per host; with more
    steps at once urllib3 discards the extra connections ("Connection pool is
    full", once for each) and opens new ones. A connection from a test's
    connector may have no such session: it is left as it is.
    """
    http = getattr(getattr(conn, "session", None), "session", None)
    if http is None or not hasattr(http, "mount"):
        return
    from keystoneauth1.session import TCPKeepAliveAdapter

    for scheme in ("https://", "http://"):
        http.mount(scheme, TCPKeepAliveAdapter(pool_maxsize=connections))


class OpenStackClient:
    """The calls the driver makes, each translated to talprov errors."""

    def __init__(
        self,
        config: OpenStackConfig,
        sleep: Callable[[float], None],
        connector: Callable[[OpenStackConfig], Any] = connect,
        instance: str = "",
    ) -> None:
        self.config = config
        #: The instance's name (``providers.<instance>``), for errors naming a setting.
        self.instance = instance
        self._sleep = sleep
        self._connector = connector
        self._conn: Any = None
        self._lock = threading.Lock()
        self._reached: set[str] = set()
        self._first_touch: dict[str, threading.Lock] = {}
        self._connections = DEFAULT_POOL
        self._microversions: dict[tuple[str, Callable[[Any], str | None]], str] = {}
        self._endpoints: dict[str, str | None] = {}
        self._in_catalog: set[str] = set()

    def __repr__(self) -> str:
        return f"OpenStackClient(cloud={self.config.cloud!r}, region={self.config.region!r})"

    @property
    def conn(self) -> Any:
        with self._lock:
            if self._conn is None:
                self._conn = self._connector(self.config)
                _size_pools(self._conn, self._connections)
            return self._conn

    def use_connections(self, connections: int) -> None:
        """Keep up to ``connections`` connections per endpoint (call before the
        first call; idempotent): one for every call that may run at once."""
        self._connections = max(DEFAULT_POOL, connections)

    def _service(self, service: str) -> Any:
        """The SDK's proxy for ``service``. Its first touch discovers the endpoint's
        versions (a call); openstacksdk does not share one touch among threads, so
        threads touching it at once wait for one of them here instead of each
        asking again."""
        with self._lock:
            first_touch = self._first_touch.setdefault(service, threading.Lock())
        with first_touch:
            return getattr(self.conn, service)

    def _proxy(self, service: str) -> Any:
        """The SDK's proxy for ``service``. Raises ``InstanceUnavailable`` naming
        ``region``/``interface`` when the catalog has no endpoint for it, and what
        the first touch raises."""
        # The first touch of a service proxy authenticates and discovers versions,
        # so it can fail like any call.
        proxy = self.read(f"reach the {service} service", lambda: self._service(service))
        if service not in self._in_catalog:
            self._refuse_missing(service, proxy)
            with self._lock:
                self._in_catalog.add(service)
        return proxy

    def _refuse_missing(self, service: str, proxy: Any) -> None:
        """Raise ``InstanceUnavailable`` when ``proxy`` is openstacksdk's stand-in for a
        service it could not load (outside any retry: asking again cannot help)."""
        from openstack import exceptions as sdk

        try:
            # The stand-in raises on any attribute; a real proxy has this method.
            hasattr(proxy, "get_endpoint")
        except sdk.ServiceDisabledException as exc:
            conn = self.conn
            region = getattr(getattr(conn, "config", None), "region_name", None)
            raise missing_endpoint(self.instance, service, region or self.config.region,
                                   self.config.interface, token_catalog(conn),
                                   str(exc)) from exc

    def reaching(self, services: Iterable[str], call: Callable[[], T]) -> T:
        """``call()``, while :meth:`reach` makes the first touch of ``services`` in a
        thread of its own; no thread once they were all reached. Raises what
        ``call`` raises."""
        with self._lock:
            todo = [s for s in services if s not in self._reached]
        if not todo:
            return call()
        with DaemonPool(1, "talprov-reach") as pool:
            pool.submit(self.reach, todo)
            return call()

    def reach(self, services: Iterable[str]) -> None:
        """Make the first touch of each service proxy (keystoneauth discovers the
        endpoint's versions then: one call each) side by side, once; later calls
        of those services then start at once. A failure is left to the call that
        needs the service. Never raises; idempotent."""
        with self._lock:
            todo = [s for s in services if s not in self._reached]
            self._reached.update(todo)
        if not todo:
            return

        def touch(service: str) -> None:
            with suppress(ProviderError):
                self._proxy(service)

        with DaemonPool(len(todo), "talprov-reach") as pool:
            list(pool.map(touch, todo))

    @property
    def compute(self) -> Any:
        """The SDK's compute proxy (Nova)."""
        return self._proxy("compute")

    @property
    def network(self) -> Any:
        """The SDK's network proxy (Neutron)."""
        return self._proxy("network")

    @property
    def image(self) -> Any:
        """The SDK's image proxy (Glance)."""
        return self._proxy("image")

    def microversion(self, service: str, proxy: Any,
                     choose: Callable[[Any], str | None] | None) -> str | None:
        """``choose(proxy)``, the microversion to ask ``service`` for, found once.

        Kept for the connection's life: it follows from the cloud's version
        document, which keystoneauth reads once per session anyway, and it cost
        more CPU per server create (0.2 ms) than building the request. None (no
        microversion, or discovery failed) is asked again next time. Raises what
        ``choose`` raises; idempotent.
        """
        if choose is None:
            return None
        key = (service, choose)
        with self._lock:
            known = self._microversions.get(key)
        if known is not None:
            return known
        version = choose(proxy)
        if version is not None:
            with self._lock:
                self._microversions[key] = version
        return version

    def read(self, what: str, fn: Callable[[], T]) -> T:
        """Run a read-only (or idempotent) call, retrying transient failures."""

        def attempt() -> T:
            with openstack_errors(what, ca_file=self.config.ca_file):
                return fn()

        return call_with_retry(attempt, policy=READ_POLICY, sleep=self._sleep)

    def write(self, what: str, fn: Callable[[], T]) -> T:
        """Run a create once; the calling step decides whether to try again."""
        with openstack_errors(what, ca_file=self.config.ca_file):
            return fn()

    def delete(self, what: str, fn: Callable[[], Any]) -> bool:
        """Run an idempotent delete; returns False when the thing was already gone."""
        try:
            self.read(what, fn)
        except NotFound:
            return False
        return True

    # -- lookups ---------------------------------------------------------------------

    def find_one(self, what: str, finder: Callable[..., Any], name_or_id: str) -> Any:
        """``finder(name_or_id)`` (an SDK ``find_*``), or None when absent.

        Raises ``InvalidRequest`` when a name matches several resources.
        """
        return self.read(what, lambda: finder(name_or_id, ignore_missing=True))

    def list(self, what: str, lister: Callable[..., Any], **query: Any) -> list[Any]:
        return self.read(what, lambda: list(lister(**query)))

    def list_json(
        self, what: str, service: str, path: str, key: str, *,
        microversion: Callable[[Any], str | None] | None = None, **query: Any,
    ) -> builtins.list[dict[str, Any]]:
        """Every item of a list call (all pages) as the API's plain JSON.

        For listings on the hot path: the SDK builds a resource object per item,
        which costs milliseconds each (30 servers took longer to build than to
        fetch); JSON costs microseconds. ``microversion(proxy)`` gives the
        microversion to ask for. Read-only; retried as :meth:`read`. Raises
        ``AuthError`` or ``Transient`` (``InstanceUnavailable`` for a service the
        catalog lacks).
        """
        if service not in self._in_catalog:
            self._proxy(service)

        def fetch() -> builtins.list[dict[str, Any]]:
            params = dict(query)
            items: builtins.list[dict[str, Any]] = []
            while True:
                body = self._send(service, "GET", path, microversion, params=params)
                page = body.get(key) or []
                items.extend(page)
                # Nova and Neutron link the next page in ``{key}_links``, Glance in ``next``.
                marker = next_marker(body.get(f"{key}_links")) or marker_of(body.get("next"))
                if not page or marker is None or marker == params.get("marker"):
                    return items
                params["marker"] = marker

        return self.read(what, fetch)

    def post_json(self, what: str, service: str, path: str, body: dict[str, Any], *,
                  microversion: Callable[[Any], str | None] | None = None) -> Any:
        """POST ``body`` as JSON and return the answer's JSON, no SDK objects (see
        :meth:`list_json`). Sent once, as :meth:`write`."""
        if service not in self._in_catalog:
            self._proxy(service)
        return self.write(what, lambda: self._send(service, "POST", path, microversion,
                                                   json=body))

    def _send(self, service: str, method: str, path: str,
              microversion: Callable[[Any], str | None] | None, **options: Any) -> Any:
        """One plain-JSON call of the hot path; its answer's JSON. Raises the SDK's
        exception for an error status (the caller translates it).

        The call goes to the service's endpoint as found on first use: keystoneauth
        would look it up in the catalog again for every call, a third of a
        call's CPU. Any failure forgets it, so an endpoint that moved (a new
        catalog) is looked up afresh by the next call.
        """
        from openstack import exceptions as sdk

        proxy = self._service(service)
        version = self.microversion(service, proxy, microversion)
        with self._lock:
            endpoint = self._endpoints.get(service)
        try:
            if endpoint is None:
                endpoint = proxy.get_endpoint()
                with self._lock:
                    self._endpoints[service] = endpoint
            response = proxy.request(path, method, microversion=version,
                                     endpoint_override=endpoint, **options)
            sdk.raise_from_response(response)
        except Exception:
            with self._lock:
                self._endpoints.pop(service, None)
            raise
        return response.json()


def next_marker(links: Any) -> str | None:
    """The ``marker`` of a ``rel: next`` link (Nova's ``{key}_links``), else None.

    Only the marker is taken: the link's host may be one the client cannot reach
    (a proxy in front of the API), so the next page is asked from the same
    endpoint with the same filters."""
    for link in links or []:
        if isinstance(link, dict) and link.get("rel") == "next":
            return marker_of(link.get("href"))
    return None


def marker_of(href: Any) -> str | None:
    """The ``marker`` query parameter of a next-page URL (Glance's ``next``), else None."""
    if not isinstance(href, str):
        return None
    markers = parse_qs(urlsplit(href).query).get("marker")
    return markers[0] if markers else None
