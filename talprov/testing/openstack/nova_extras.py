"""Compute v2.1 flavors and zones, server tags (2.26+), metadata, server groups (2.64 policy).

A mixin of ``NovaApi``: the handlers use its ``state``, ``_server`` and the
request's negotiated microversion, and answer with Nova's fault bodies.
"""

from __future__ import annotations

from typing import Any

from talprov.testing.openstack.state import CloudState, Server, ServerGroup, new_id
from talprov.testing.openstack.wire import HttpError, Request, Response

POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")
TAG_STATES = {"active", "paused", "rescued", "resized", "stopped", "suspended", "shelved",
              "shelved_offloaded", "error"}


FAULT_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 409: "conflictingRequest", 413: "overLimit",
               429: "overLimit", 501: "notImplemented", 503: "serviceUnavailable"}


def nova_error(status: int, message: str, headers: dict[str, str] | None = None) -> HttpError:
    name = FAULT_NAMES.get(status, "computeFault")
    return HttpError(status, {name: {"code": status, "message": message}}, headers)


class FlavorsMixin:
    """Flavor (list, detail, get: a name is not an id, so GET-by-name is 404) and zone routes."""

    @property
    def state(self) -> CloudState:
        raise NotImplementedError

    def _flavor_view(self, req: Request, flavor: Any, detail: bool) -> dict[str, Any]:
        href = f"{req.base_url}/compute/v2.1/flavors/{flavor.id}"
        view: dict[str, Any] = {"id": flavor.id, "name": flavor.name,
                                "links": [{"rel": "self", "href": href}]}
        if req.microversion >= (2, 55):
            view["description"] = flavor.description
        if detail:
            view.update({
                "vcpus": flavor.vcpus, "ram": flavor.ram, "disk": flavor.disk,
                "swap": flavor.swap if (flavor.swap or req.microversion >= (2, 75)) else "",
                "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral, "OS-FLV-DISABLED:disabled": False,
                "rxtx_factor": 1.0, "os-flavor-access:is_public": flavor.is_public,
            })
            if req.microversion >= (2, 61):
                view["extra_specs"] = dict(flavor.extra_specs)
        return view

    def list_flavors(self, req: Request) -> Response:
        detail = req.path.rstrip("/").endswith("/detail")
        flavors = sorted(self.state.flavors.values(), key=lambda f: (f.ram, f.id))
        min_ram, min_disk = req.arg("minRam"), req.arg("minDisk")
        if min_ram:
            flavors = [f for f in flavors if f.ram >= int(min_ram)]
        if min_disk:
            flavors = [f for f in flavors if f.disk >= int(min_disk)]
        return Response(200, {"flavors": [self._flavor_view(req, f, detail) for f in flavors]})

    def get_flavor(self, req: Request) -> Response:
        flavor = self.state.flavors.get(req.params["id"])
        if flavor is None:
            raise nova_error(404, f"Flavor {req.params['id']} could not be found.")
        return Response(200, {"flavor": self._flavor_view(req, flavor, True)})

    def list_azs(self, req: Request) -> Response:
        return Response(200, {"availabilityZoneInfo": [
            {"zoneName": name, "zoneState": {"available": True}, "hosts": None}
            for name in self.state.availability_zones
        ]})



class ServerExtrasMixin:
    """Tags, metadata and server group routes of the compute API."""

    @property
    def state(self) -> CloudState:
        raise NotImplementedError

    def _server(self, req: Request) -> Server:
        raise NotImplementedError

    # -- tags (2.26+) --------------------------------------------------------------

    def _tag_server(self, req: Request, write: bool) -> Server:
        if req.microversion < (2, 26):
            raise nova_error(404, "The resource could not be found.")
        server = self._server(req)
        if write and server.vm_state not in TAG_STATES:
            raise nova_error(409, f"Cannot 'update tags' instance {server.id} while it is in "
                             f"vm_state {server.vm_state}")
        return server

    def list_tags(self, req: Request) -> Response:
        return Response(200, {"tags": list(self._tag_server(req, False).tags)})

    def replace_tags(self, req: Request) -> Response:
        server = self._tag_server(req, True)
        body = req.json()
        tags = body.get("tags") if isinstance(body, dict) else None
        if not isinstance(tags, list):
            raise nova_error(400, "Invalid input for field/attribute tags.")
        check_tags(tags)
        server.tags = list(dict.fromkeys(tags))
        return Response(200, {"tags": list(server.tags)})

    def delete_tags(self, req: Request) -> Response:
        self._tag_server(req, True).tags = []
        return Response(204)

    def check_tag(self, req: Request) -> Response:
        if req.params["tag"] not in self._tag_server(req, False).tags:
            raise nova_error(404, f"Tag {req.params['tag']} could not be found.")
        return Response(204)

    def add_tag(self, req: Request) -> Response:
        server = self._tag_server(req, True)
        tag = req.params["tag"]
        if tag in server.tags:
            return Response(204)
        check_tags([*server.tags, tag])
        server.tags.append(tag)
        href = f"{req.base_url}/compute/v2.1/servers/{server.id}/tags/{tag}"
        return Response(201, headers={"Location": href})

    def remove_tag(self, req: Request) -> Response:
        server = self._tag_server(req, True)
        if req.params["tag"] not in server.tags:
            raise nova_error(404, f"Tag {req.params['tag']} could not be found.")
        server.tags.remove(req.params["tag"])
        return Response(204)

    # -- metadata --------------------------------------------------------------------

    def _meta_body(self, req: Request, key: str) -> dict[str, str]:
        body = req.json()
        meta = body.get(key) if isinstance(body, dict) else None
        if not isinstance(meta, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 255 and len(v) <= 255
                for k, v in meta.items()):
            raise nova_error(400, f"Invalid input for field/attribute {key}.")
        return meta

    def get_metadata(self, req: Request) -> Response:
        return Response(200, {"metadata": dict(self._server(req).metadata)})

    def merge_metadata(self, req: Request) -> Response:
        server = self._server(req)
        server.metadata.update(self._meta_body(req, "metadata"))
        return Response(200, {"metadata": dict(server.metadata)})

    def replace_metadata(self, req: Request) -> Response:
        server = self._server(req)
        server.metadata = dict(self._meta_body(req, "metadata"))
        return Response(200, {"metadata": dict(server.metadata)})

    def get_meta_item(self, req: Request) -> Response:
        server, key = self._server(req), req.params["key"]
        if key not in server.metadata:
            raise nova_error(404, "Metadata item was not found")
        return Response(200, {"meta": {key: server.metadata[key]}})

    def set_meta_item(self, req: Request) -> Response:
        server, key = self._server(req), req.params["key"]
        meta = self._meta_body(req, "meta")
        if list(meta) != [key]:
            raise nova_error(400, "Request body and URI mismatch")
        server.metadata[key] = meta[key]
        return Response(200, {"meta": meta})

    def delete_meta_item(self, req: Request) -> Response:
        server, key = self._server(req), req.params["key"]
        if server.metadata.pop(key, None) is None:
            raise nova_error(404, "Metadata item was not found")
        return Response(204)

    # -- server groups -----------------------------------------------------------------

    def _group_view(self, req: Request, group: ServerGroup) -> dict[str, Any]:
        view: dict[str, Any] = {"id": group.id, "name": group.name,
                                "members": list(group.members)}
        if req.microversion >= (2, 64):
            view.update(policy=group.policy, rules=dict(group.rules))
        else:
            view.update(policies=[group.policy], metadata={})
        if req.microversion >= (2, 13):
            view.update(project_id=group.project_id, user_id=group.user_id)
        return view

    def create_group(self, req: Request) -> Response:
        body = req.json()
        spec = body.get("server_group") if isinstance(body, dict) else None
        if not isinstance(spec, dict) or not spec.get("name"):
            raise nova_error(400, "Invalid input for field/attribute server_group.")
        if req.microversion >= (2, 64):
            policy, rules = spec.get("policy"), spec.get("rules") or {}
        else:
            policies = spec.get("policies") or []
            policy, rules = (policies[0] if len(policies) == 1 else None), {}
        if policy not in POLICIES:
            raise nova_error(400, f"Invalid input for field/attribute policy. Value: {policy}.")
        limit = self.state.quotas.get("server_groups")
        if limit is not None and len(self.state.server_groups) >= limit:
            raise nova_error(403, "Quota exceeded, too many server groups.")
        group = ServerGroup(id=new_id(), name=spec["name"], policy=policy, rules=rules,
                            project_id=self.state.project_id,
                            user_id=req.token.user_id if req.token else "")
        self.state.server_groups[group.id] = group
        return Response(200, {"server_group": self._group_view(req, group)})

    def list_groups(self, req: Request) -> Response:
        groups = list(self.state.server_groups.values())
        return Response(200, {"server_groups": [self._group_view(req, g) for g in groups]})

    def _group(self, req: Request) -> ServerGroup:
        group = self.state.server_groups.get(req.params["id"])
        if group is None:
            raise nova_error(404, f"Instance group {req.params['id']} could not be found.")
        return group

    def get_group(self, req: Request) -> Response:
        return Response(200, {"server_group": self._group_view(req, self._group(req))})

    def delete_group(self, req: Request) -> Response:
        del self.state.server_groups[self._group(req).id]
        return Response(204)



def check_tags(tags: Any) -> None:
    if not isinstance(tags, list) or len(tags) > 50:
        raise nova_error(400, "Invalid input for field/attribute tags.")
    for tag in tags:
        if not isinstance(tag, str) or not 1 <= len(tag) <= 60 or "," in tag or "/" in tag:
            raise nova_error(400, f"Invalid input for field/attribute tags. Value: {tag}.")
