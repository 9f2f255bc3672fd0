"""Compute API versions: the version documents and microversion negotiation.

A request names its microversion in ``OpenStack-API-Version: compute X.Y`` (or
the older ``X-OpenStack-Nova-API-Version``); none means the minimum, ``latest``
the maximum, and a version outside [min, max] is refused with 406, as Nova's
``api_version_request`` does. Every versioned answer echoes the version in both
headers.
"""

from __future__ import annotations

import re
from typing import Any

from talprov.testing.openstack.nova_extras import nova_error
from talprov.testing.openstack.wire import HttpError, Request, Response

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 96)


def version_text(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def negotiate(req: Request) -> tuple[int, int]:
    """The microversion a request asked for; raises 406 outside [min, max]."""
    header = req.header("openstack-api-version")
    asked = ""
    if header:
        for part in header.split(","):
            service, _, value = part.strip().partition(" ")
            if service.lower() == "compute":
                asked = value.strip()
    asked = asked or req.header("x-openstack-nova-api-version")
    if not asked:
        return MIN_VERSION
    if asked == "latest":
        return MAX_VERSION
    found = re.fullmatch(r"(\d+)\.(\d+)", asked)
    if found is None:
        raise nova_error(400, f"API Version String {asked} is of invalid format. Must be of "
                         "format MajorNum.MinorNum.")
    version = (int(found[1]), int(found[2]))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise nova_error(406, f"Version {asked} is not supported by the API. Minimum is "
                         f"{version_text(MIN_VERSION)} and maximum is "
                         f"{version_text(MAX_VERSION)}.")
    return version


class VersionsMixin:
    """The version documents and the wrapper that negotiates each request's version."""

    def _versioned(self, handler: Any) -> Any:
        def wrapped(req: Request) -> Response:
            req.microversion = negotiate(req)
            text = version_text(req.microversion)
            headers = {"OpenStack-API-Version": f"compute {text}",
                       "X-OpenStack-Nova-API-Version": text,
                       "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version"}
            try:
                response: Response = handler(req)
            except HttpError as err:
                err.response.headers.update(headers)
                raise
            response.headers.update(headers)
            return response

        return wrapped

    def _version_doc(self, base: str) -> dict[str, Any]:
        return {"id": "v2.1", "status": "CURRENT", "version": version_text(MAX_VERSION),
                "min_version": version_text(MIN_VERSION), "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"}]}

    def versions(self, req: Request) -> Response:
        return Response(200, {"versions": [self._version_doc(req.base_url)]})

    def version(self, req: Request) -> Response:
        doc = self._version_doc(req.base_url)
        doc["media-types"] = [{"base": "application/json",
                               "type": "application/vnd.openstack.compute+json;version=2.1"}]
        return Response(200, {"version": doc})
