"""A thin, error-translating wrapper over one openstacksdk connection.

The SDK's own status-code retries are turned off (keystoneauth would otherwise
sleep and retry 503s by itself, and Glance calls five times): talprov retries
reads and idempotent deletes here with its jittered policy, and creates only at
step level, where each step looks for what it would create before creating it.
Every call goes through :func:`openstack_errors`, so callers only ever see
talprov errors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from talprov.openstack.config import OpenStackConfig
from talprov.openstack.errors import openstack_errors
from talprov.providers.errors import NotFound
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
    with openstack_errors("connecting to the cloud", endpoint=auth_url):
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


class OpenStackClient:
    """The calls the driver makes, each translated to talprov errors."""

    def __init__(
        self,
        config: OpenStackConfig,
        sleep: Callable[[float], None],
        connector: Callable[[OpenStackConfig], Any] = connect,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._connector = connector
        self._conn: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenStackClient(cloud={self.config.cloud!r}, region={self.config.region!r})"

    @property
    def conn(self) -> Any:
        with self._lock:
            if self._conn is None:
                self._conn = self._connector(self.config)
            return self._conn

    def _proxy(self, service: str) -> Any:
        # The first touch of a service proxy authenticates and discovers versions,
        # so it can fail like any call.
        return self.read(f"reach the {service} service", lambda: getattr(self.conn, service))

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

    def read(self, what: str, fn: Callable[[], T]) -> T:
        """Run a read-only (or idempotent) call, retrying transient failures."""

        def attempt() -> T:
            with openstack_errors(what):
                return fn()

        return call_with_retry(attempt, policy=READ_POLICY, sleep=self._sleep)

    def write(self, what: str, fn: Callable[[], T]) -> T:
        """Run a create once; the calling step decides whether to try again."""
        with openstack_errors(what):
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
