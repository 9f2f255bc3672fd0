"""``FakeOpenStack``: one small cloud (Keystone, Nova, Glance, Neutron) on 127.0.0.1.

Tests start it, point openstacksdk at ``auth_url`` and inspect what the driver
left behind through ``servers()``, ``ports()``, ``images()`` and friends. Faults
are injected from the test process: quotas, NoValidHost per availability zone,
error statuses (with Retry-After) on the next N calls of a route, slow builds,
revoked tokens.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable

from talprov.testing.openstack.glance import GlanceApi, glance_error
from talprov.testing.openstack.keystone import KeystoneApi
from talprov.testing.openstack.neutron import NeutronApi
from talprov.testing.openstack.nova import NO_VALID_HOST, NovaApi
from talprov.testing.openstack.nova_extras import nova_error
from talprov.testing.openstack.standard_attrs import neutron_error
from talprov.testing.openstack.state import (
    AppCredential,
    CloudState,
    Flavor,
    FloatingIp,
    Image,
    Network,
    Port,
    RouteFault,
    SecurityGroup,
    Server,
    ServerGroup,
    Subnet,
    Token,
    User,
    new_hex_id,
    new_id,
)
from talprov.testing.openstack.wire import HttpError, HttpServer, Request, Response, Router

# Version documents answer without a token, as the real services' do.
OPEN_PATHS = re.compile(r"^/(identity(/v3)?|compute(/v2\.1)?|image(/v2)?|network)/?$")

DEFAULT_FLAVORS = [
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
    ("5", "m1.xlarge", 8, 16384, 160),
]


class FakeOpenStack:
    """A fake OpenStack cloud over real HTTP. Start it, use ``auth_url``, stop it."""

    def __init__(
        self,
        *,
        availability_zones: tuple[str, ...] = ("az1", "az2"),
        hosts_per_zone: int = 3,
        username: str = "demo",
        password: str = "demo-secret",  # noqa: S107 - a test fake's own user
        region: str = "RegionOne",
    ) -> None:
        self.lock = threading.RLock()
        self.state = CloudState(region=region)
        self.username, self.password = username, password
        self._layout = (availability_zones, hosts_per_zone)
        self.calls: list[tuple[str, str, str]] = []
        self._identity: Callable[[str], Token] | None = None
        self._hooks: list[tuple[str, re.Pattern[str], Callable[[Request, Response], None]]] = []
        self._seed(availability_zones, hosts_per_zone)
        self.keystone = KeystoneApi(self)
        self.nova = NovaApi(self)
        self.glance = GlanceApi(self)
        self.neutron = NeutronApi(self)
        self.router = Router()
        for api in (self.keystone, self.nova, self.glance, self.neutron):
            api.register(self.router)
        self._http = HttpServer(self.dispatch)

    # -- lifecycle -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def auth_url(self) -> str:
        return f"{self.url}/identity/v3"

    def start(self) -> FakeOpenStack:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def reset(self) -> None:
        """Back to a freshly seeded cloud: no servers, images, ports or tokens, no
        faults, hooks or other identity service; ``calls`` emptied. Idempotent."""
        with self.lock:
            self.state = CloudState(region=self.state.region)
            self.calls.clear()
            self._hooks.clear()
            self._identity = None
            self._seed(*self._layout)

    def __enter__(self) -> FakeOpenStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def auth(self) -> dict[str, str]:
        """A clouds.yaml-style password ``auth`` block for this cloud."""
        return {"auth_url": self.auth_url, "username": self.username,
                "password": self.password, "project_name": self.state.project_name,
                "user_domain_name": "Default", "project_domain_name": "Default"}

    def add_application_credential(self, name: str = "talprov") -> tuple[str, str]:
        """Create an application credential for the default user; returns (id, secret)."""
        with self.lock:
            user = self.state.users[self.username]
            cred = AppCredential(id=new_hex_id(), name=name, secret=new_hex_id(),
                                 user_id=user.id, project_id=self.state.project_id)
            self.state.app_credentials[cred.id] = cred
            return cred.id, cred.secret

    def _seed(self, zones: tuple[str, ...], hosts_per_zone: int) -> None:
        state = self.state
        state.users[self.username] = User(id=new_hex_id(), name=self.username,
                                          password=self.password)
        state.availability_zones = {
            zone: [f"{zone}-compute-{i}" for i in range(hosts_per_zone)] for zone in zones
        }
        for flavor_id, name, vcpus, ram, disk in DEFAULT_FLAVORS:
            state.flavors[flavor_id] = Flavor(flavor_id, name, vcpus, ram, disk)
        sg = SecurityGroup(id=new_id(), name="default", project_id=state.project_id,
                           description="Default security group")
        state.security_groups[sg.id] = sg
        self.add_network("private", "10.0.0.0/24")
        self.add_network("public", "172.24.4.0/24", external=True)

    # -- seeding helpers -----------------------------------------------------------

    def add_network(self, name: str, cidr: str, *, external: bool = False) -> Network:
        """A network with one IPv4 subnet."""
        with self.lock:
            net = Network(id=new_id(), name=name, project_id=self.state.project_id,
                          external=external)
            subnet = Subnet(id=new_id(), name=f"{name}-subnet", network_id=net.id, cidr=cidr,
                            project_id=self.state.project_id)
            net.subnet_ids.append(subnet.id)
            self.state.networks[net.id] = net
            self.state.subnets[subnet.id] = subnet
            return net

    def add_image(self, name: str, **properties: str) -> Image:
        """An active image, as if an operator had uploaded it."""
        with self.lock:
            image = Image(id=new_id(), name=name, owner=self.state.project_id,
                          disk_format="raw", container_format="bare", status="active",
                          data=b"", size=0, properties=dict(properties))
            self.state.images[image.id] = image
            return image

    def network_id(self, name: str) -> str:
        with self.lock:
            return next(n.id for n in self.state.networks.values() if n.name == name)

    # -- fault injection -------------------------------------------------------------

    def set_quota(self, resource: str, limit: int | None) -> None:
        """Limit ``instances``/``cores``/``ram``/``server_groups`` (Nova, 403) or
        ``port``/``floatingip``/``network`` (Neutron, 409 OverQuota)."""
        if resource not in self.state.quotas:
            raise KeyError(resource)
        with self.lock:
            self.state.quotas[resource] = limit

    def no_valid_host(self, zone: str, count: int = 1) -> None:
        """The next ``count`` boots in ``zone`` end in ERROR with a NoValidHost fault."""
        with self.lock:
            self.state.faults.build_failures[zone] = [NO_VALID_HOST] * count

    def fail_builds(self, zone: str, message: str, count: int = 1) -> None:
        """The next ``count`` boots in ``zone`` end in ERROR with the fault ``message``
        (e.g. a hypervisor error), as the compute service reports it."""
        with self.lock:
            self.state.faults.build_failures[zone] = [message] * count

    def slow_builds(self, polls: int) -> None:
        """Servers created from now on stay BUILD for ``polls`` observations."""
        with self.lock:
            self.state.faults.build_polls = polls

    def slow_deletes(self, polls: int) -> None:
        """Deleted servers stay listed (task_state ``deleting``) for ``polls`` observations."""
        with self.lock:
            self.state.faults.delete_polls = polls

    def without_tag_on_create(self) -> None:
        """Behave like a Neutron that lists ``standard-attr-tag`` but neither
        ``tag-creation`` nor ``tag-ports-during-bulk-creation``: a create that
        carries ``tags`` gets 400 "Unrecognized attribute(s) 'tags'", and tags are
        set with ``PUT /v2.0/{resources}/{id}/tags`` only."""
        with self.lock:
            self.state.tag_on_create = False

    def fail_next(self, method: str, path: str, status: int, *, count: int = 1,
                  retry_after: float | None = None) -> None:
        """Answer the next ``count`` calls of ``method`` on paths matching the regex
        ``path`` (searched in the request path) with ``status``."""
        with self.lock:
            self.state.faults.routes.append(
                RouteFault(method.upper(), re.compile(path), status, count, retry_after))

    def revoke_tokens(self) -> None:
        """Forget every issued token, as a token expiry or revocation would."""
        with self.lock:
            self.state.tokens.clear()

    def change_password(self, password: str) -> None:
        with self.lock:
            self.state.users[self.username].password = password
            self.password = password

    # -- inspection --------------------------------------------------------------------

    def servers(self) -> list[Server]:
        with self.lock:
            return copy.deepcopy(list(self.state.servers.values()))

    def ports(self) -> list[Port]:
        with self.lock:
            return copy.deepcopy(list(self.state.ports.values()))

    def images(self) -> list[Image]:
        with self.lock:
            return copy.deepcopy(list(self.state.images.values()))

    def floating_ips(self) -> list[FloatingIp]:
        with self.lock:
            return copy.deepcopy(list(self.state.floating_ips.values()))

    def server_groups(self) -> list[ServerGroup]:
        with self.lock:
            return copy.deepcopy(list(self.state.server_groups.values()))

    def count_calls(self, method: str, path_regex: str) -> int:
        pattern = re.compile(path_regex)
        with self.lock:
            return sum(1 for m, p, _ in self.calls if m == method and pattern.search(p))

    # -- dispatch ------------------------------------------------------------------------

    def use_identity(self, validate: Callable[[str], Token]) -> None:
        """Validate tokens with ``validate`` (e.g. against a real Keystone) instead of
        this fake's own identity service; it raises ``HttpError`` 401 for bad ones."""
        with self.lock:
            self._identity = validate

    def after(self, method: str, path: str, hook: Callable[[Request, Response], None]) -> None:
        """Call ``hook`` once a matching request has been handled, before its answer is
        sent: a test can kill the client there, after the cloud acted but before the
        client learned of it."""
        with self.lock:
            self._hooks.append((method.upper(), re.compile(path), hook))

    def dispatch(self, req: Request) -> Response:
        with self.lock:
            self.calls.append((req.method, req.path, "&".join(
                f"{k}={v}" for k, vs in req.query.items() for v in vs)))
            response = self._handle(req)
            for method, pattern, hook in list(self._hooks):
                if method == req.method and pattern.search(req.path):
                    hook(req, response)
            return response

    def _handle(self, req: Request) -> Response:
        try:
            self._injected(req)
            matched = self.router.match(req.method, req.path)
            if matched is None:
                raise HttpError(404, b"404 Not Found\n\nThe resource could not be found.\n",
                                content_type="text/plain; charset=UTF-8")
            route, req.params = matched
            if not req.path.startswith("/identity/") and not OPEN_PATHS.match(req.path):
                if self._identity is not None:
                    req.token = self._identity(req.header("x-auth-token"))
                else:
                    req.token = self.keystone.authenticate(req)
            return route.handler(req)
        except HttpError as err:
            return err.response

    def _injected(self, req: Request) -> None:
        for fault in self.state.faults.routes:
            if fault.remaining > 0 and fault.method == req.method and fault.path.search(
                    req.path):
                fault.remaining -= 1
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                raise _service_error(req.path, fault.status, headers)


def _service_error(path: str, status: int, headers: dict[str, str]) -> HttpError:
    messages = {429: "Rate limit exceeded", 500: "Unexpected API Error.",
                502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
                409: "Conflict"}
    message = messages.get(status, "Injected failure")
    if path.startswith("/compute"):
        err = nova_error(status, message, headers)
    elif path.startswith("/network"):
        err = neutron_error(status, "HTTP" + message.replace(" ", ""), message)
        err.response.headers.update(headers)
    elif path.startswith("/image"):
        err = glance_error(status, message, message)
        err.response.headers.update(headers)
    else:
        err = HttpError(status, {"error": {"code": status, "title": message,
                                           "message": message}}, headers)
    return err

