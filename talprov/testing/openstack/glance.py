"""Image v2: create (queued), upload data with ``PUT .../file`` (active), get, list, patch, delete.

Custom properties sit at the top level of the image, as in Glance v2, and list
calls filter on them as on the base attributes. Glance's own errors are plain
text (``404 Not Found ...``), not JSON.
"""

from __future__ import annotations

import hashlib
from typing import Any

from talprov.testing.openstack.state import Image, ServiceApi, new_id, now_iso
from talprov.testing.openstack.wire import HttpError, Request, Response, Router

DISK_FORMATS = {"ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso",
                "ploop"}
CONTAINER_FORMATS = {"ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"}
READ_ONLY = {"status", "checksum", "size", "virtual_size", "created_at", "updated_at", "file",
             "self", "schema", "os_hash_algo", "os_hash_value", "direct_url", "locations",
             "owner"}
BASE = {"id", "name", "disk_format", "container_format", "visibility", "protected",
        "min_disk", "min_ram", "tags", "os_hidden"}
VISIBILITIES = {"public", "private", "shared", "community"}


def glance_error(status: int, title: str, message: str) -> HttpError:
    return HttpError(status, f"{status} {title}\n\n{message}\n\n   ".encode(),
                     content_type="text/plain; charset=UTF-8")


class GlanceApi(ServiceApi):
    """Routes under ``/image``."""

    def register(self, router: Router) -> None:
        router.add("GET", "/image", self.versions)
        router.add("GET", "/image/v2", self.versions)
        router.add("POST", "/image/v2/images", self.create)
        router.add("GET", "/image/v2/images", self.list)
        router.add("GET", "/image/v2/images/{id}", self.get)
        router.add("PATCH", "/image/v2/images/{id}", self.patch)
        router.add("DELETE", "/image/v2/images/{id}", self.delete)
        router.add("PUT", "/image/v2/images/{id}/file", self.upload)
        router.add("GET", "/image/v2/images/{id}/file", self.download)

    def versions(self, req: Request) -> Response:
        href = f"{req.base_url}/image/v2/"
        values = [{"id": f"v2.{minor}", "status": "CURRENT" if minor == 16 else "SUPPORTED",
                   "links": [{"rel": "self", "href": href}]} for minor in (16, 15, 9, 0)]
        return Response(300, {"versions": values})

    def view(self, image: Image) -> dict[str, Any]:
        body: dict[str, Any] = dict(image.properties)
        body.update({
            "id": image.id, "name": image.name, "status": image.status,
            "visibility": image.visibility, "protected": image.protected, "os_hidden": False,
            "checksum": image.checksum, "os_hash_algo": "sha512" if image.checksum else None,
            "os_hash_value": image.os_hash_value, "size": image.size,
            "virtual_size": image.virtual_size, "disk_format": image.disk_format,
            "container_format": image.container_format, "min_disk": image.min_disk,
            "min_ram": image.min_ram, "owner": image.owner, "tags": list(image.tags),
            "created_at": image.created_at, "updated_at": image.updated_at,
            "self": f"/v2/images/{image.id}", "file": f"/v2/images/{image.id}/file",
            "schema": "/v2/schemas/image",
        })
        return body

    def _image(self, req: Request) -> Image:
        image = self.state.images.get(req.params["id"])
        if image is None:
            raise glance_error(404, "Not Found", f"No image found with ID {req.params['id']}")
        return image

    def _apply(self, image: Image, key: str, value: Any) -> None:
        if key in READ_ONLY:
            raise glance_error(403, "Forbidden", f"Attribute '{key}' is read-only.")
        if key == "disk_format" and value is not None and value not in DISK_FORMATS:
            valid = ", ".join(sorted(DISK_FORMATS))
            raise glance_error(400, "Bad Request", f"Invalid value '{value}' for parameter "
                               f"'disk_format': Valid values are: {valid}")
        if (key == "container_format" and value is not None
                and value not in CONTAINER_FORMATS):
            raise glance_error(400, "Bad Request", f"Invalid value '{value}' for parameter "
                               "'container_format'")
        if key == "visibility" and value not in VISIBILITIES:
            raise glance_error(400, "Bad Request", f"Invalid visibility value: {value}")
        if key in BASE:
            if key == "tags":
                image.tags = list(dict.fromkeys(value))
            elif key != "os_hidden":
                setattr(image, key, value)
            return
        if not isinstance(value, str):
            raise glance_error(400, "Bad Request", f"Provided object does not match schema "
                               f"'image': {value!r} is not of type 'string' ({key})")
        image.properties[key] = value

    def create(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            raise glance_error(400, "Bad Request", "Request body must be a JSON object")
        image_id = body.pop("id", None) or new_id()
        if image_id in self.state.images:
            raise glance_error(409, "Conflict", f"Image with identifier {image_id} already "
                               "exists!")
        image = Image(id=image_id, name=None, owner=self.state.project_id)
        for key, value in body.items():
            self._apply(image, key, value)
        self.state.images[image.id] = image
        return Response(201, self.view(image),
                        headers={"Location": f"{req.base_url}/image/v2/images/{image.id}"})

    def list(self, req: Request) -> Response:
        images = sorted(self.state.images.values(), key=lambda i: i.created_at, reverse=True)
        reserved = {"limit", "marker", "sort_key", "sort_dir", "sort", "member_status"}
        for key, values in req.query.items():
            if key in reserved:
                continue
            wanted = values[-1]
            if key == "tag":
                images = [i for i in images if all(v in i.tags for v in values)]
            elif key == "visibility" and wanted == "all":
                continue
            else:
                images = [i for i in images if _matches(self.view(i).get(key), wanted)]
        if "visibility" not in req.query:
            images = [i for i in images if i.visibility != "community"]
        body: dict[str, Any] = {"first": "/v2/images", "schema": "/v2/schemas/images"}
        marker, limit = req.arg("marker"), req.arg("limit")
        if marker:
            ids = [i.id for i in images]
            if marker not in ids:
                raise glance_error(400, "Bad Request", f"Invalid marker. Image {marker} could "
                                   "not be found.")
            images = images[ids.index(marker) + 1:]
        if limit is not None and len(images) > int(limit):
            images = images[: int(limit)]
            body["next"] = f"/v2/images?marker={images[-1].id}&limit={limit}"
        body["images"] = [self.view(i) for i in images]
        return Response(200, body)

    def get(self, req: Request) -> Response:
        return Response(200, self.view(self._image(req)))

    def patch(self, req: Request) -> Response:
        image = self._image(req)
        if not req.header("content-type").startswith("application/openstack-images-v2.1-json"
                                                      "-patch"):
            raise glance_error(415, "Unsupported Media Type", "Unsupported Content-Type")
        ops = req.json()
        if not isinstance(ops, list):
            raise glance_error(400, "Bad Request", "Expected a list of JSON patch operations")
        for op in ops:
            key = str(op.get("path", "")).lstrip("/")
            if op.get("op") in ("add", "replace"):
                self._apply(image, key, op.get("value"))
            elif op.get("op") == "remove":
                if key in READ_ONLY or key in BASE:
                    raise glance_error(403, "Forbidden", f"Attribute '{key}' is reserved.")
                if image.properties.pop(key, None) is None:
                    raise glance_error(409, "Conflict", f"Property {key} does not exist.")
            else:
                raise glance_error(400, "Bad Request", f"Invalid operation: {op.get('op')}")
        image.updated_at = now_iso()
        return Response(200, self.view(image))

    def delete(self, req: Request) -> Response:
        image = self._image(req)
        if image.protected:
            raise glance_error(403, "Forbidden", f"Image {image.id} is protected and cannot "
                               "be deleted.")
        del self.state.images[image.id]
        return Response(204)

    def upload(self, req: Request) -> Response:
        image = self._image(req)
        if req.header("content-type") != "application/octet-stream":
            raise glance_error(415, "Unsupported Media Type", "Unsupported Content-Type")
        if image.status != "queued":
            raise glance_error(409, "Conflict", f"Image status transition from {image.status} "
                               "to saving is not allowed")
        if not image.disk_format or not image.container_format:
            raise glance_error(400, "Bad Request", "Properties disk_format, container_format "
                               "must be set prior to saving data.")
        image.data = req.body
        image.size = len(req.body)
        # Glance's legacy ``checksum`` is MD5 by definition; it is not a security use.
        image.checksum = hashlib.md5(req.body, usedforsecurity=False).hexdigest()
        image.os_hash_value = hashlib.sha512(req.body).hexdigest()
        image.status = "active"
        image.updated_at = now_iso()
        return Response(204)

    def download(self, req: Request) -> Response:
        image = self._image(req)
        if image.data is None:
            return Response(204)
        return Response(200, image.data, content_type="application/octet-stream",
                        headers={"Content-MD5": image.checksum or ""})


def _matches(value: Any, wanted: str) -> bool:
    if isinstance(value, bool):
        return str(value).lower() == wanted.lower()
    return value is not None and str(value) == wanted
