"""Networking v2.0: networks, subnets, ports, floating IPs, security groups, tags.

Errors use Neutron's body, ``{"NeutronError": {"type", "message", "detail"}}``;
quota exhaustion is 409 ``OverQuota``, as Neutron answers it. List calls accept
attribute filters and the tag filters ``tags``, ``tags-any``, ``not-tags``,
``not-tags-any`` (comma-separated), and tags may be given when creating ports,
networks and floating IPs (Neutron's ``tag-creation`` extensions). Ports may
also be created in bulk (``{"ports": [...]}``): all of them or, on an error, none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from talprov.testing.openstack.port_records import (
    create_port_record,
    delete_port_record,
    over_quota,
)
from talprov.testing.openstack.standard_attrs import (
    EXTENSIONS,
    bump,
    check_if_match,
    check_tag,
    neutron_error,
    tag_filter,
)
from talprov.testing.openstack.state import (
    FloatingIp,
    Network,
    Port,
    SecurityGroup,
    ServiceApi,
    Subnet,
    new_id,
)
from talprov.testing.openstack.wire import HttpError, Request, Response, Router

EXTENSIONS = [
    ("standard-attr-tag", "Tag support for resources with standard attribute"),
    ("tag-ports-during-bulk-creation", "Tag ports during bulk creation"),
    ("tag-creation", "Tag creation on resource creation"),
    ("external-net", "Neutron external network"),
    ("security-group", "security-group"),
    ("quotas", "Quota management support"),
    ("binding", "Port Binding"),
    *EXTENSIONS,
]
TAGGABLE = {"networks", "ports", "floatingips", "security-groups", "subnets"}
#: The extensions that let a create carry ``tags`` (absent without tag-on-create).
TAG_ON_CREATE = {"tag-creation", "tag-ports-during-bulk-creation"}


class NeutronApi(ServiceApi):
    """Routes under ``/network``."""

    def register(self, router: Router) -> None:
        p = "/network/v2.0"
        router.add("GET", "/network", self.versions)
        router.add("GET", p, self.resources)
        router.add("GET", f"{p}/extensions", self.extensions)
        router.add("GET", f"{p}/networks", self._lister(lambda: self.state.networks,
                                                        self.network_view))
        router.add("GET", f"{p}/networks/{{id}}", self._getter("networks"))
        router.add("POST", f"{p}/networks", self.create_network)
        router.add("GET", f"{p}/subnets", self._lister(lambda: self.state.subnets,
                                                       self.subnet_view))
        router.add("GET", f"{p}/subnets/{{id}}", self._getter("subnets"))
        router.add("GET", f"{p}/security-groups",
                   self._lister(lambda: self.state.security_groups, self.sg_view))
        router.add("GET", f"{p}/security-groups/{{id}}", self._getter("security-groups"))
        router.add("GET", f"{p}/ports", self._lister(lambda: self.state.ports, self.port_view))
        router.add("POST", f"{p}/ports", self.create_port)
        router.add("GET", f"{p}/ports/{{id}}", self._getter("ports"))
        router.add("PUT", f"{p}/ports/{{id}}", self.update_port)
        router.add("DELETE", f"{p}/ports/{{id}}", self.delete_port)
        router.add("GET", f"{p}/floatingips",
                   self._lister(lambda: self.state.floating_ips, self.fip_view))
        router.add("POST", f"{p}/floatingips", self.create_fip)
        router.add("GET", f"{p}/floatingips/{{id}}", self._getter("floatingips"))
        router.add("PUT", f"{p}/floatingips/{{id}}", self.update_fip)
        router.add("DELETE", f"{p}/floatingips/{{id}}", self.delete_fip)
        router.add("GET", f"{p}/{{kind}}/{{id}}/tags", self.list_tags)
        router.add("PUT", f"{p}/{{kind}}/{{id}}/tags", self.replace_tags)
        router.add("DELETE", f"{p}/{{kind}}/{{id}}/tags", self.delete_tags)
        router.add("GET", f"{p}/{{kind}}/{{id}}/tags/{{tag}}", self.check_tag)
        router.add("PUT", f"{p}/{{kind}}/{{id}}/tags/{{tag}}", self.add_tag)
        router.add("DELETE", f"{p}/{{kind}}/{{id}}/tags/{{tag}}", self.remove_tag)

    # -- discovery ---------------------------------------------------------------

    def versions(self, req: Request) -> Response:
        return Response(200, {"versions": [{
            "id": "v2.0", "status": "CURRENT",
            "links": [{"rel": "self", "href": f"{req.base_url}/network/v2.0/"}],
        }]})

    def resources(self, req: Request) -> Response:
        names = ["networks", "subnets", "ports", "floatingips", "security-groups"]
        return Response(200, {"resources": [
            {"name": n[:-1], "collection": n,
             "links": [{"rel": "self", "href": f"{req.base_url}/network/v2.0/{n}"}]}
            for n in names
        ]})

    def extensions(self, req: Request) -> Response:
        return Response(200, {"extensions": [
            {"alias": a, "name": a, "description": d, "updated": "2023-01-01T00:00:00-00:00",
             "links": []}
            for a, d in EXTENSIONS
            if self.state.tag_on_create or a not in TAG_ON_CREATE
        ]})

    # -- views -------------------------------------------------------------------

    def _common(self, obj: Any) -> dict[str, Any]:
        return {"project_id": obj.project_id, "tenant_id": obj.project_id,
                "tags": list(obj.tags),
                "revision_number": getattr(obj, "revision_number", 1)}

    def network_view(self, n: Network) -> dict[str, Any]:
        return {**self._common(n), "id": n.id, "name": n.name, "status": "ACTIVE",
                "admin_state_up": True, "shared": n.shared, "router:external": n.external,
                "mtu": n.mtu, "subnets": list(n.subnet_ids), "description": "",
                "availability_zones": [], "created_at": n.created_at, "updated_at": n.created_at}

    def subnet_view(self, s: Subnet) -> dict[str, Any]:
        return {"id": s.id, "name": s.name, "network_id": s.network_id, "cidr": s.cidr,
                "ip_version": s.ip_version, "gateway_ip": s.gateway_ip,
                "enable_dhcp": s.enable_dhcp, "project_id": s.project_id,
                "tenant_id": s.project_id, "tags": [], "description": ""}

    def sg_view(self, g: SecurityGroup) -> dict[str, Any]:
        return {**self._common(g), "id": g.id, "name": g.name, "description": g.description,
                "security_group_rules": []}

    def port_view(self, p: Port) -> dict[str, Any]:
        return {**self._common(p), "id": p.id, "name": p.name, "network_id": p.network_id,
                "mac_address": p.mac_address, "fixed_ips": [dict(i) for i in p.fixed_ips],
                "security_groups": list(p.security_groups), "device_id": p.device_id,
                "device_owner": p.device_owner, "status": p.status,
                "admin_state_up": p.admin_state_up, "description": p.description,
                "binding:host_id": p.binding_host, "binding:vnic_type": "normal",
                "allowed_address_pairs": [], "created_at": p.created_at,
                "updated_at": p.updated_at}

    def fip_view(self, f: FloatingIp) -> dict[str, Any]:
        return {**self._common(f), "id": f.id, "floating_network_id": f.floating_network_id,
                "floating_ip_address": f.floating_ip_address, "port_id": f.port_id,
                "fixed_ip_address": f.fixed_ip_address, "status": f.status,
                "router_id": None, "description": f.description,
                "created_at": f.created_at, "updated_at": f.updated_at}

    # -- generic list/get --------------------------------------------------------

    def _lister(
        self, table: Callable[[], dict[str, Any]], view: Callable[[Any], dict[str, Any]]
    ) -> Callable[[Request], Response]:
        def handler(req: Request) -> Response:
            collection = req.path.rstrip("/").rsplit("/", 1)[-1]
            items = [view(obj) for obj in table().values()]
            reserved = {"tags", "tags-any", "not-tags", "not-tags-any", "fields", "limit",
                        "marker", "sort_key", "sort_dir"}
            filters = {k: v for k, v in req.query.items() if k not in reserved}
            items = [i for i in items
                     if tag_filter(req.query, i.get("tags", []))
                     and all(_attr_matches(i.get(k), vals) for k, vals in filters.items())]
            return Response(200, {collection.replace("-", "_"): items})

        return handler

    def _table(self, kind: str) -> tuple[dict[str, Any], Callable[[Any], dict[str, Any]], str]:
        tables: dict[str, tuple[dict[str, Any], Callable[[Any], dict[str, Any]], str]] = {
            "networks": (self.state.networks, self.network_view, "Network"),
            "subnets": (self.state.subnets, self.subnet_view, "Subnet"),
            "ports": (self.state.ports, self.port_view, "Port"),
            "floatingips": (self.state.floating_ips, self.fip_view, "FloatingIP"),
            "security-groups": (self.state.security_groups, self.sg_view, "SecurityGroup"),
        }
        if kind not in tables:
            raise neutron_error(404, "HTTPNotFound", "The resource could not be found.")
        return tables[kind]

    def _lookup(self, kind: str, obj_id: str) -> Any:
        table, _, label = self._table(kind)
        obj = table.get(obj_id)
        if obj is None:
            raise neutron_error(404, f"{label}NotFound", f"{label} {obj_id} could not be found.")
        return obj

    def _getter(self, kind: str) -> Callable[[Request], Response]:
        def handler(req: Request) -> Response:
            _, view, _ = self._table(kind)
            key = {"floatingips": "floatingip", "security-groups": "security_group"}.get(
                kind, kind[:-1])
            return Response(200, {key: view(self._lookup(kind, req.params["id"]))})

        return handler

    def _create_tags(self, spec: dict[str, Any]) -> list[str]:
        """The tags of a create body; without tag-on-create Neutron's API layer
        rejects the unknown attribute before anything is made."""
        if not self.state.tag_on_create and "tags" in spec:
            raise neutron_error(400, "HTTPBadRequest", "Unrecognized attribute(s) 'tags'")
        return _tags(spec)

    # -- networks ----------------------------------------------------------------

    def create_network(self, req: Request) -> Response:
        spec = _body(req, "network")
        limit = self.state.quotas.get("network")
        if limit is not None and len(self.state.networks) >= limit:
            raise over_quota("network")
        tags = self._create_tags(spec)
        net = Network(id=new_id(), name=spec.get("name", ""), project_id=self.state.project_id,
                      external=bool(spec.get("router:external", False)),
                      shared=bool(spec.get("shared", False)), tags=tags)
        self.state.networks[net.id] = net
        return Response(201, {"network": self.network_view(net)})

    # -- ports -------------------------------------------------------------------

    def create_port(self, req: Request) -> Response:
        body = req.json()
        if isinstance(body, dict) and isinstance(body.get("ports"), list):
            return self.create_ports(body["ports"])
        return Response(201, {"port": self.port_view(self._new_port(_body(req, "port")))})

    def create_ports(self, specs: list[Any]) -> Response:
        """Neutron's bulk create: every port or none (an error undoes those made)."""
        made: list[Port] = []
        try:
            for spec in specs:
                if not isinstance(spec, dict):
                    raise neutron_error(400, "HTTPBadRequest", "Resource body required: 'port'.")
                made.append(self._new_port(spec))
        except HttpError:
            for port in made:
                delete_port_record(self.state, port)
            raise
        return Response(201, {"ports": [self.port_view(port) for port in made]})

    def _new_port(self, spec: dict[str, Any]) -> Port:
        if "network_id" not in spec:
            raise neutron_error(400, "HTTPBadRequest", "Failed to parse request. Required "
                                "attribute 'network_id' not specified")
        for group in spec.get("security_groups") or []:
            if group not in self.state.security_groups:
                raise neutron_error(404, "SecurityGroupNotFound",
                                    f"Security group {group} does not exist")
        return create_port_record(
            self.state, spec["network_id"], name=spec.get("name", ""),
            fixed_ips=spec.get("fixed_ips"), security_groups=spec.get("security_groups"),
            tags=self._create_tags(spec), description=spec.get("description", ""),
            device_id=spec.get("device_id", ""), device_owner=spec.get("device_owner", ""),
        )

    def update_port(self, req: Request) -> Response:
        port: Port = self._lookup("ports", req.params["id"])
        check_if_match(req, port)
        spec = _body(req, "port")
        for key in ("name", "description", "device_id", "device_owner"):
            if key in spec:
                setattr(port, key, spec[key])
        if "security_groups" in spec:
            port.security_groups = list(spec["security_groups"])
        bump(port)
        return Response(200, {"port": self.port_view(port)})

    def delete_port(self, req: Request) -> Response:
        port: Port = self._lookup("ports", req.params["id"])
        check_if_match(req, port)
        if port.device_owner.startswith("network:"):
            raise neutron_error(409, "PortInUse", f"Port {port.id} cannot be deleted directly "
                                "via the port API: has device owner " + port.device_owner)
        delete_port_record(self.state, port)
        return Response(204)

    # -- floating IPs ------------------------------------------------------------

    def create_fip(self, req: Request) -> Response:
        spec = _body(req, "floatingip")
        net = self.state.networks.get(spec.get("floating_network_id", ""))
        if net is None or not net.external:
            raise neutron_error(404, "ExternalNetworkNotFound" if net is None else "BadRequest",
                                f"External network {spec.get('floating_network_id')} could not "
                                "be found.")
        limit = self.state.quotas.get("floatingip")
        if limit is not None and len(self.state.floating_ips) >= limit:
            raise over_quota("floatingip")
        address = self.state.subnets[net.subnet_ids[0]].allocate() if net.subnet_ids else None
        if address is None:
            raise neutron_error(409, "IpAddressGenerationFailure",
                                f"No more IP addresses available on network {net.id}.")
        fip = FloatingIp(id=new_id(), floating_network_id=net.id, floating_ip_address=address,
                         project_id=self.state.project_id, description=spec.get("description", ""),
                         tags=self._create_tags(spec))
        self.state.floating_ips[fip.id] = fip
        self._associate(fip, spec.get("port_id"), spec.get("fixed_ip_address"))
        return Response(201, {"floatingip": self.fip_view(fip)})

    def _associate(self, fip: FloatingIp, port_id: str | None, fixed_ip: str | None) -> None:
        if port_id is None:
            fip.port_id = fip.fixed_ip_address = None
            fip.status = "DOWN"
            return
        port: Port = self._lookup("ports", port_id)
        if not port.fixed_ips:
            raise neutron_error(400, "BadRequest", f"Port {port_id} has no fixed IP.")
        for other in self.state.floating_ips.values():
            if other.port_id == port_id and other.id != fip.id:
                raise neutron_error(409, "FloatingIPPortAlreadyAssociated",
                                    f"Cannot associate floating IP {fip.floating_ip_address} "
                                    f"with port {port_id}: already has a floating IP.")
        fip.port_id = port_id
        fip.fixed_ip_address = fixed_ip or port.fixed_ips[0]["ip_address"]
        fip.status = "ACTIVE"

    def update_fip(self, req: Request) -> Response:
        fip: FloatingIp = self._lookup("floatingips", req.params["id"])
        check_if_match(req, fip)
        spec = _body(req, "floatingip")
        if "port_id" in spec:
            self._associate(fip, spec["port_id"], spec.get("fixed_ip_address"))
        if "description" in spec:
            fip.description = spec["description"]
        bump(fip)
        return Response(200, {"floatingip": self.fip_view(fip)})

    def delete_fip(self, req: Request) -> Response:
        fip: FloatingIp = self._lookup("floatingips", req.params["id"])
        check_if_match(req, fip)
        net = self.state.networks[fip.floating_network_id]
        if net.subnet_ids:
            self.state.subnets[net.subnet_ids[0]].allocated.discard(fip.floating_ip_address)
        del self.state.floating_ips[fip.id]
        return Response(204)

    # -- tags --------------------------------------------------------------------

    def _tagged(self, req: Request) -> Any:
        if req.params["kind"] not in TAGGABLE:
            raise neutron_error(404, "HTTPNotFound", "The resource could not be found.")
        return self._lookup(req.params["kind"], req.params["id"])

    def list_tags(self, req: Request) -> Response:
        return Response(200, {"tags": list(self._tagged(req).tags)})

    def replace_tags(self, req: Request) -> Response:
        obj = self._tagged(req)
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("tags"), list):
            raise neutron_error(400, "HTTPBadRequest", "Invalid input: 'tags' list expected.")
        for tag in body["tags"]:
            check_tag(tag)
        obj.tags = list(dict.fromkeys(body["tags"]))
        bump(obj)
        return Response(200, {"tags": list(obj.tags)})

    def delete_tags(self, req: Request) -> Response:
        obj = self._tagged(req)
        obj.tags = []
        bump(obj)
        return Response(204)

    def check_tag(self, req: Request) -> Response:
        if req.params["tag"] not in self._tagged(req).tags:
            raise neutron_error(404, "TagNotFound", f"Tag {req.params['tag']} could not be found.")
        return Response(204)

    def add_tag(self, req: Request) -> Response:
        obj = self._tagged(req)
        check_tag(req.params["tag"])
        if req.params["tag"] not in obj.tags:
            obj.tags.append(req.params["tag"])
            bump(obj)
        return Response(201)

    def remove_tag(self, req: Request) -> Response:
        obj = self._tagged(req)
        if req.params["tag"] not in obj.tags:
            raise neutron_error(404, "TagNotFound", f"Tag {req.params['tag']} could not be found.")
        obj.tags.remove(req.params["tag"])
        bump(obj)
        return Response(204)


def _body(req: Request, key: str) -> dict[str, Any]:
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise neutron_error(400, "HTTPBadRequest", f"Resource body required: '{key}'.")
    spec: dict[str, Any] = body[key]
    return spec


def _tags(spec: dict[str, Any]) -> list[str]:
    tags = spec.get("tags") or []
    for tag in tags:
        check_tag(tag)
    return list(dict.fromkeys(tags))


def _attr_matches(value: Any, wanted: list[str]) -> bool:
    """Neutron list filters: equality, several values meaning 'any of'."""
    if isinstance(value, bool):
        return str(value).lower() in [w.lower() for w in wanted]
    if isinstance(value, list):
        return any(w in [str(v) for v in value] for w in wanted)
    return str(value) in wanted if value is not None else "" in wanted

