"""Compute v2.1: versions, flavors, availability zones, servers, tags, metadata, groups.

Microversions are negotiated from ``OpenStack-API-Version: compute X.Y`` (or the
older ``X-OpenStack-Nova-API-Version``) and echoed back; responses change shape
where the API reference says they do (embedded flavor at 2.47, server group
``policy`` at 2.64, tags at 2.26). Errors use Nova's fault bodies such as
``{"itemNotFound": {"code": 404, "message": ...}}``.

A server is BUILD when created and settles on a later poll, ACTIVE on a host or
ERROR with a ``fault`` (for NoValidHost). Ports given by the caller survive the
server's deletion (unbound); ports Nova created from ``networks: [{uuid}]`` do not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from typing import Any

from talprov.testing.openstack.nova_extras import (
    FlavorsMixin,
    ServerExtrasMixin,
    check_tags,
    nova_error,
)
from talprov.testing.openstack.nova_versions import VersionsMixin
from talprov.testing.openstack.port_records import (
    bind_port,
    create_port_record,
    delete_port_record,
    unbind_port,
)
from talprov.testing.openstack.standard_attrs import tag_filter
from talprov.testing.openstack.state import (
    Server,
    ServerGroup,
    ServiceApi,
    new_id,
    now_iso,
)
from talprov.testing.openstack.wire import Request, Response, Router

NO_VALID_HOST = "No valid host was found. There are not enough hosts available."
MAX_USER_DATA = 65535


class NovaApi(ServiceApi, VersionsMixin, FlavorsMixin, ServerExtrasMixin):
    """Routes under ``/compute``."""

    def register(self, router: Router) -> None:
        p = "/compute/v2.1"
        router.add("GET", "/compute", self.versions)
        router.add("GET", p, self.version)
        routes = [
            ("GET", "/flavors", self.list_flavors),
            ("GET", "/flavors/detail", self.list_flavors),
            ("GET", "/flavors/{id}", self.get_flavor),
            ("GET", "/os-availability-zone", self.list_azs),
            ("POST", "/servers", self.create_server),
            ("GET", "/servers", self.list_servers),
            ("GET", "/servers/detail", self.list_servers),
            ("GET", "/servers/{id}", self.get_server),
            ("DELETE", "/servers/{id}", self.delete_server),
            ("POST", "/servers/{id}/action", self.server_action),
            ("GET", "/servers/{id}/tags", self.list_tags),
            ("PUT", "/servers/{id}/tags", self.replace_tags),
            ("DELETE", "/servers/{id}/tags", self.delete_tags),
            ("GET", "/servers/{id}/tags/{tag}", self.check_tag),
            ("PUT", "/servers/{id}/tags/{tag}", self.add_tag),
            ("DELETE", "/servers/{id}/tags/{tag}", self.remove_tag),
            ("GET", "/servers/{id}/metadata", self.get_metadata),
            ("POST", "/servers/{id}/metadata", self.merge_metadata),
            ("PUT", "/servers/{id}/metadata", self.replace_metadata),
            ("GET", "/servers/{id}/metadata/{key}", self.get_meta_item),
            ("PUT", "/servers/{id}/metadata/{key}", self.set_meta_item),
            ("DELETE", "/servers/{id}/metadata/{key}", self.delete_meta_item),
            ("POST", "/os-server-groups", self.create_group),
            ("GET", "/os-server-groups", self.list_groups),
            ("GET", "/os-server-groups/{id}", self.get_group),
            ("DELETE", "/os-server-groups/{id}", self.delete_group),
        ]
        for method, path, handler in routes:
            router.add(method, p + path, self._versioned(handler))

    # -- servers: create -----------------------------------------------------------

    def create_server(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("server"), dict):
            raise nova_error(400, "Invalid input for field/attribute server.")
        spec: dict[str, Any] = body["server"]
        hints = body.get("os:scheduler_hints") or body.get("OS-SCH-HNT:scheduler_hints") or {}
        name = spec.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise nova_error(400, "Invalid input for field/attribute name.")
        flavor = self._flavor_from_ref(str(spec.get("flavorRef", "")))
        image_id, bdm = self._boot_source(spec)
        zone = spec.get("availability_zone")
        if zone is not None and zone not in self.state.availability_zones:
            raise nova_error(400, "The requested availability zone is not available")
        user_data = spec.get("user_data")
        if user_data is not None:
            _check_user_data(user_data)
        metadata = spec.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 255 and len(v) <= 255
            for k, v in metadata.items()
        ):
            raise nova_error(400, "Invalid input for field/attribute metadata.")
        tags = spec.get("tags") or []
        if tags and req.microversion < (2, 52):
            raise nova_error(400, "Invalid input for field/attribute server. Value: ... "
                             "Additional properties are not allowed ('tags' was unexpected)")
        check_tags(tags)
        groups = [g.get("name") for g in spec.get("security_groups") or []]
        known = {g.name for g in self.state.security_groups.values()} | set(
            self.state.security_groups)
        for group_name in groups:
            if group_name not in known:
                raise nova_error(400, f"Security group {group_name} not found for project "
                                 f"{self.state.project_id}.")
        port_ids, networks = self._networks(req, spec.get("networks"))
        group = None
        if "group" in hints:
            group = self.state.server_groups.get(hints["group"])
            if group is None:
                raise nova_error(400, "Invalid input for field/attribute group.")
        self._check_quota(flavor)
        server = Server(
            id=new_id(), name=name, project_id=self.state.project_id,
            user_id=req.token.user_id if req.token else "", flavor=flavor, image_id=image_id,
            availability_zone=zone or "", user_data=user_data, metadata=dict(metadata),
            tags=list(dict.fromkeys(tags)), port_ids=port_ids, networks_to_allocate=networks,
            security_groups=[g for g in groups if g] or ["default"],
            config_drive=bool(spec.get("config_drive", False)), key_name=spec.get("key_name"),
            server_group_id=group.id if group else None, block_devices=bdm, requested_az=zone,
        )
        self._schedule(server, group)
        self.state.servers[server.id] = server
        if group is not None:
            group.members.append(server.id)
        href = f"{req.base_url}/compute/v2.1/servers/{server.id}"
        return Response(
            202,
            {"server": {"id": server.id, "OS-DCF:diskConfig": "MANUAL",
                        "adminPass": secrets.token_urlsafe(9),
                        "security_groups": [{"name": g} for g in server.security_groups],
                        "links": [{"rel": "self", "href": href}]}},
            headers={"Location": href},
        )

    def _flavor_from_ref(self, ref: str) -> Any:
        flavor_id = ref.rstrip("/").rsplit("/", 1)[-1]
        flavor = self.state.flavors.get(flavor_id)
        if flavor is None:
            raise nova_error(400, f"Flavor {ref} could not be found.")
        return flavor

    def _boot_source(self, spec: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
        bdm = list(spec.get("block_device_mapping_v2") or [])
        boot = next((b for b in bdm if str(b.get("boot_index")) == "0"), None)
        image_ref = spec.get("imageRef") or (boot.get("uuid") if boot and
                                            boot.get("source_type") == "image" else None)
        if not image_ref:
            if boot is None:
                raise nova_error(400, "Missing imageRef attribute")
            return None, bdm
        image_id = str(image_ref).rstrip("/").rsplit("/", 1)[-1]
        image = self.state.images.get(image_id)
        if image is None:
            raise nova_error(400, f"Image {image_id} could not be found.")
        if image.status != "active":
            raise nova_error(400, f"Image {image_id} is not active.")
        if boot is not None and boot.get("destination_type") == "volume":
            # Volume-backed: the image only seeds the volume; Nova shows no image.
            return None, bdm
        return image_id, bdm

    def _networks(self, req: Request, networks: Any) -> tuple[list[str], list[str]]:
        if networks is None:
            if req.microversion >= (2, 37):
                raise nova_error(400, "Invalid input for field/attribute server. Value: ... "
                                 "'networks' is a required property")
            networks = "auto"
        if networks == "none":
            return [], []
        if networks == "auto":
            tenant = [n for n in self.state.networks.values() if not n.external]
            return [], [tenant[0].id] if tenant else []
        port_ids: list[str] = []
        nets: list[str] = []
        for item in networks:
            if "port" in item:
                port = self.state.ports.get(item["port"])
                if port is None:
                    raise nova_error(400, f"Port id {item['port']} not found.")
                if port.device_id:
                    raise nova_error(409, f"Port {port.id} is still in use.")
                port_ids.append(port.id)
            elif "uuid" in item:
                if item["uuid"] not in self.state.networks:
                    raise nova_error(400, f"Network {item['uuid']} could not be found.")
                nets.append(item["uuid"])
            else:
                raise nova_error(400, "Invalid input for field/attribute networks.")
        return port_ids, nets

    def _check_quota(self, flavor: Any) -> None:
        active = list(self.state.servers.values())
        used = {"instances": len(active), "cores": sum(s.flavor.vcpus for s in active),
                "ram": sum(s.flavor.ram for s in active)}
        wanted = {"instances": 1, "cores": flavor.vcpus, "ram": flavor.ram}
        for resource in ("instances", "cores", "ram"):
            limit = self.state.quotas.get(resource)
            if limit is not None and used[resource] + wanted[resource] > limit:
                raise nova_error(403, f"Quota exceeded for {resource}: Requested "
                                 f"{wanted[resource]}, but already used {used[resource]} of "
                                 f"{limit} {resource}")

    def _schedule(self, server: Server, group: ServerGroup | None) -> None:
        """Decide where the build will land (or that it fails), as the scheduler would."""
        server.polls_until_done = self.state.faults.build_polls
        zones = [server.requested_az] if server.requested_az else list(
            self.state.availability_zones)
        injected = self.state.faults.build_failures.get(zones[0] if zones else "", [])
        if injected:
            server.fault_message = injected.pop(0)
            server.outcome = "error"
            return
        taken = set()
        if group is not None:
            taken = {self.state.servers[m].host for m in group.members
                     if m in self.state.servers and self.state.servers[m].host}
        for zone in zones:
            for host in self.state.availability_zones.get(zone, []):
                if group is not None and group.policy == "anti-affinity" and host in taken:
                    continue
                if group is not None and group.policy == "affinity" and taken and (
                        host not in taken):
                    continue
                server.host, server.availability_zone = host, zone
                return
        server.outcome, server.fault_message = "error", NO_VALID_HOST

    # -- servers: observe ----------------------------------------------------------

    def advance(self, server: Server) -> bool:
        """One poll of a server: a build counts down then settles, a delete counts down
        then completes. Returns False once the server is gone."""
        if server.deleting_polls is not None:
            if server.deleting_polls > 0:
                server.deleting_polls -= 1
                return True
            self._finish_delete(server)
            return False
        if server.status != "BUILD":
            return True
        if server.polls_until_done > 0:
            server.polls_until_done -= 1
            server.task_state = "spawning" if server.host else "scheduling"
            return True
        server.updated = now_iso()
        server.task_state = None
        if server.outcome == "error":
            server.status, server.vm_state, server.host = "ERROR", "error", None
            server.fault = {"code": 500, "created": now_iso(), "message": server.fault_message}
            return True
        for net_id in server.networks_to_allocate:
            port = create_port_record(self.state, net_id, device_id=server.id)
            server.nova_port_ids.append(port.id)
        for port_id in server.port_ids + server.nova_port_ids:
            if port_id in self.state.ports:
                bind_port(self.state, self.state.ports[port_id], server)
        server.status, server.vm_state, server.power_state = "ACTIVE", "active", 1
        server.launched_at = now_iso()
        return True

    def _server(self, req: Request) -> Server:
        server = self.state.servers.get(req.params["id"])
        if server is None:
            raise nova_error(404, f"Instance {req.params['id']} could not be found.")
        return server

    def _addresses(self, server: Server) -> dict[str, list[dict[str, Any]]]:
        addresses: dict[str, list[dict[str, Any]]] = {}
        for port in self.state.ports.values():
            if port.device_id != server.id:
                continue
            net_name = self.state.networks[port.network_id].name
            entries = addresses.setdefault(net_name, [])
            for item in port.fixed_ips:
                entries.append({"addr": item["ip_address"], "version": 4,
                                "OS-EXT-IPS:type": "fixed",
                                "OS-EXT-IPS-MAC:mac_addr": port.mac_address})
            for fip in self.state.floating_ips.values():
                if fip.port_id == port.id:
                    entries.append({"addr": fip.floating_ip_address, "version": 4,
                                    "OS-EXT-IPS:type": "floating",
                                    "OS-EXT-IPS-MAC:mac_addr": port.mac_address})
        return addresses

    def server_view(self, req: Request, server: Server) -> dict[str, Any]:
        mv = req.microversion
        href = f"{req.base_url}/compute/v2.1/servers/{server.id}"
        flavor = server.flavor
        host_id = hashlib.sha224((server.project_id + (server.host or "")).encode()).hexdigest()
        view: dict[str, Any] = {
            "id": server.id, "name": server.name, "status": server.status,
            "tenant_id": server.project_id, "user_id": server.user_id,
            "metadata": dict(server.metadata), "hostId": host_id if server.host else "",
            "image": {"id": server.image_id} if server.image_id else "",
            "created": server.created, "updated": server.updated,
            "addresses": self._addresses(server), "accessIPv4": "", "accessIPv6": "",
            "links": [{"rel": "self", "href": href}], "OS-DCF:diskConfig": "MANUAL",
            "progress": 100 if server.status == "ACTIVE" else 0,
            "OS-EXT-AZ:availability_zone": server.availability_zone,
            "config_drive": "True" if server.config_drive else "", "key_name": server.key_name,
            "OS-SRV-USG:launched_at": server.launched_at, "OS-SRV-USG:terminated_at": None,
            "OS-EXT-STS:task_state": server.task_state, "OS-EXT-STS:vm_state": server.vm_state,
            "OS-EXT-STS:power_state": server.power_state,
            "os-extended-volumes:volumes_attached": [],
            "security_groups": [{"name": g} for g in server.security_groups],
        }
        if mv >= (2, 47):
            view["flavor"] = {"vcpus": flavor.vcpus, "ram": flavor.ram, "disk": flavor.disk,
                              "ephemeral": flavor.ephemeral, "swap": flavor.swap,
                              "original_name": flavor.name, "extra_specs": {}}
        else:
            view["flavor"] = {"id": flavor.id, "links": [
                {"rel": "bookmark", "href": f"{req.base_url}/compute/flavors/{flavor.id}"}]}
        if mv >= (2, 9):
            view["locked"] = False
        if mv >= (2, 19):
            view["description"] = None
        if mv >= (2, 26):
            view["tags"] = list(server.tags)
        if mv >= (2, 63):
            view["trusted_image_certificates"] = None
        if mv >= (2, 71):
            view["server_groups"] = [server.server_group_id] if server.server_group_id else []
        if mv >= (2, 73):
            view["locked_reason"] = None
        if mv >= (2, 96):
            view["pinned_availability_zone"] = server.requested_az
        if server.fault is not None:
            view["fault"] = dict(server.fault)
        return view

    def get_server(self, req: Request) -> Response:
        server = self._server(req)
        if not self.advance(server):
            raise nova_error(404, f"Instance {server.id} could not be found.")
        return Response(200, {"server": self.server_view(req, server)})

    def list_servers(self, req: Request) -> Response:
        detail = req.path.rstrip("/").endswith("/detail")
        servers = sorted(self.state.servers.values(), key=lambda s: s.created, reverse=True)
        name, status = req.arg("name"), req.arg("status")
        chosen = []
        for server in servers:
            if name and not re.search(name, server.name):
                continue
            if not tag_filter(req.query, server.tags):
                continue
            if not self.advance(server):
                continue
            if status and server.status != status.upper():
                continue
            chosen.append(server)
        body: dict[str, Any] = {}
        marker, limit = req.arg("marker"), req.arg("limit")
        if marker:
            ids = [s.id for s in chosen]
            if marker not in ids:
                raise nova_error(400, f"marker [{marker}] not found")
            chosen = chosen[ids.index(marker) + 1:]
        if limit is not None and len(chosen) > int(limit):
            chosen = chosen[: int(limit)]
            path = "servers/detail" if detail else "servers"
            body["servers_links"] = [{"rel": "next", "href": f"{req.base_url}/compute/v2.1/"
                                      f"{path}?limit={limit}&marker={chosen[-1].id}"}]
        if detail:
            body["servers"] = [self.server_view(req, s) for s in chosen]
        else:
            body["servers"] = [{"id": s.id, "name": s.name,
                                "links": [{"rel": "self", "href":
                                           f"{req.base_url}/compute/v2.1/servers/{s.id}"}]}
                               for s in chosen]
        return Response(200, body)

    # -- servers: delete and actions -------------------------------------------------

    def delete_server(self, req: Request) -> Response:
        server = self._server(req)
        if server.deleting_polls is not None:
            return Response(204)
        if self.state.faults.delete_polls > 0:
            # Nova answers at once and deletes in the background (task_state deleting).
            server.deleting_polls = self.state.faults.delete_polls
            server.task_state = "deleting"
            return Response(204)
        self._finish_delete(server)
        return Response(204)

    def _finish_delete(self, server: Server) -> None:
        for port_id in server.nova_port_ids:
            if port_id in self.state.ports:
                delete_port_record(self.state, self.state.ports[port_id])
        for port_id in server.port_ids:
            port = self.state.ports.get(port_id)
            if port is not None and port.device_id == server.id:
                unbind_port(port)
        for group in self.state.server_groups.values():
            if server.id in group.members:
                group.members.remove(server.id)
        del self.state.servers[server.id]

    def server_action(self, req: Request) -> Response:
        server = self._server(req)
        body = req.json()
        action = next(iter(body), None) if isinstance(body, dict) else None
        wanted = {"os-stop": ("active", "stopped", "SHUTOFF", 4),
                  "os-start": ("stopped", "active", "ACTIVE", 1),
                  "reboot": ("active", "active", "ACTIVE", 1)}
        if action not in wanted:
            raise nova_error(400, f"There is no such action: {action}")
        from_state, to_state, status, power = wanted[action]
        if server.vm_state != from_state:
            raise nova_error(409, f"Cannot '{action}' instance {server.id} while it is in "
                             f"vm_state {server.vm_state}")
        server.vm_state, server.status, server.power_state = to_state, status, power
        return Response(202)


def _check_user_data(user_data: Any) -> None:
    # The value is never echoed back: it usually holds secrets (Talos machine configs).
    if not isinstance(user_data, str) or len(user_data) > MAX_USER_DATA:
        raise nova_error(400, "User data too large or not a string. User data must be no "
                         f"larger than {MAX_USER_DATA} bytes once base64 encoded.")
    try:
        base64.b64decode(user_data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise nova_error(400, "Invalid input for field/attribute user_data. Value: <hidden>. "
                         "'<hidden>' is not a 'base64'") from exc

