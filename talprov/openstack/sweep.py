"""The leak sweep: ports and floating IPs talprov made that nothing uses any more.

Ports are created before their server (so a failed boot can reuse them in the
next zone and release them by tag), and floating IPs are released after their
server is gone. A worker killed between those calls, or a request deleted or
forgotten while its machine was half made, leaves a tagged part behind that no
deprovision will ever look for. The reconciler lists these with
:func:`list_leftovers`, keeps the ones whose request it still holds, and hands
the rest to :func:`delete_leftover`.

Costs do not grow with the number of requests: one port list and one
floating-IP list, both filtered by the owner's tags on the server side.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

from openstack import exceptions as sdk

from talprov.daemon_pool import DaemonPool
from talprov.openstack.client import OpenStackClient
from talprov.openstack.servers import owner_tags, tag, tag_query
from talprov.providers.errors import NotFound
from talprov.providers.ownership import REQUEST_KEY
from talprov.providers.protocol import Leftover
from talprov.providers.types import REQUEST_ID_PATTERN, Owner

PORT = "port"
FLOATING_IP = "floating_ip"
#: Start of the description of every floating IP talprov creates. Floating IPs
#: have no name, and a long request id only fits its tag as a digest, so the
#: description is where the sweep reads the id back from.
FLOATING_IP_DESCRIPTION = "talprov request "

_REQUEST_MARK = REQUEST_KEY + "="


def floating_ip_description(request_id: str) -> str:
    """The description talprov gives the floating IP of ``request_id``."""
    return FLOATING_IP_DESCRIPTION + request_id


def port_in_use(port: Any) -> bool:
    """Whether a server (or a router, DHCP agent, ...) has the port."""
    return bool(getattr(port, "device_id", None) or getattr(port, "device_owner", None))


def floating_ip_in_use(fip: Any) -> bool:
    """Whether the floating IP is associated with a port."""
    return bool(getattr(fip, "port_id", None))


def is_owned(tags: Iterable[str] | None, owner: Owner) -> bool:
    """Whether ``tags`` carry both of ``owner``'s marks."""
    return set(owner_tags(owner)) <= set(tags or [])


def request_id_of(tags: Iterable[str] | None, hint: str | None) -> str | None:
    """The request named by the one request tag in ``tags``, or None.

    A request id too long for a tag travels as a digest; then ``hint`` (read
    from the port's name or the floating IP's description) is the id if its
    digest is the one in the tag. None when there is no request tag, several of
    them, or a digest nothing explains: the reconciler never sweeps those.
    """
    marks = [t for t in tags or [] if t.startswith(_REQUEST_MARK)]
    if len(marks) != 1:
        return None
    candidates = (marks[0][len(_REQUEST_MARK):], hint)
    for candidate in candidates:
        # The pattern rules out a digest ("sha256:...") posing as an id.
        if (candidate and re.fullmatch(REQUEST_ID_PATTERN, candidate)
                and tag(REQUEST_KEY, candidate) == marks[0]):
            return candidate
    return None


def _port_hint(port: Any) -> str | None:
    # Ports are named "<request id>-<index>".
    name = str(getattr(port, "name", None) or "")
    return name.rsplit("-", 1)[0] if "-" in name else None


def _floating_ip_hint(fip: Any) -> str | None:
    description = str(getattr(fip, "description", None) or "")
    if description.startswith(FLOATING_IP_DESCRIPTION):
        return description[len(FLOATING_IP_DESCRIPTION):]
    return None


def list_leftovers(client: OpenStackClient, owner: Owner) -> list[Leftover]:
    """``owner``'s detached ports, then its unassociated floating IPs.

    Exactly one port list and one floating-IP list, filtered by the owner's
    tags. Ports come first: deleting a port frees a floating IP still associated
    with it, which the next sweep then finds. Read-only and idempotent. Raises
    ``AuthError`` or ``Transient``.
    """
    query = tag_query(owner_tags(owner))

    def listed(what: str, path: str, key: str) -> list[SimpleNamespace]:
        # Neutron's JSON with attribute access: no SDK object per part.
        return [SimpleNamespace(**item) for item in client.list_json(
            what, "network", path, key, tags=query)]

    # The two lists side by side: neither depends on the other.
    with DaemonPool(1, "talprov-sweep") as pool:
        fips_listed = pool.submit(listed, "list floating IPs", "/floatingips", "floatingips")
        ports = listed("list ports", "/ports", "ports")
        fips = fips_listed.result()
    # Checked again here: a cloud that does not know the tag filter may ignore it
    # and answers with every port of the project.
    found = [Leftover(kind=PORT, id=str(p.id), request_id=request_id_of(p.tags, _port_hint(p)))
             for p in ports if is_owned(p.tags, owner) and not port_in_use(p)]
    found += [Leftover(kind=FLOATING_IP, id=str(f.id),
                       request_id=request_id_of(f.tags, _floating_ip_hint(f)))
              for f in fips if is_owned(f.tags, owner) and not floating_ip_in_use(f)]
    return found


def delete_leftover(client: OpenStackClient, owner: Owner, leftover: Leftover) -> bool:
    """Delete one leftover if it is still ``owner``'s, still unused and still of the
    same request; returns whether a delete was sent and took effect.

    The part is read again first, and the delete carries its revision
    (``If-Match: revision_number=N``): Neutron bumps the revision when Nova
    binds a port or a floating IP is associated, so a part taken into use after
    the read is refused with 412 and left alone. Gone (before or during the
    delete) is success. Idempotent. Raises ``AuthError`` or ``Transient``.
    """
    network = client.network
    kinds: dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[[Any], bool],
                           Callable[[Any], str | None]]] = {
        PORT: (network.get_port, network.delete_port, port_in_use, _port_hint),
        FLOATING_IP: (network.get_ip, network.delete_ip, floating_ip_in_use,
                      _floating_ip_hint),
    }
    if leftover.kind not in kinds:
        return False
    getter, deleter, in_use, hint = kinds[leftover.kind]
    what = leftover.kind.replace("_", " ")
    try:
        current = client.read(f"get {what}", lambda: getter(leftover.id))
    except NotFound:
        return False
    if (not is_owned(current.tags, owner) or in_use(current)
            or request_id_of(current.tags, hint(current)) != leftover.request_id):
        return False
    revision = getattr(current, "revision_number", None)

    def conditional_delete() -> bool:
        try:
            deleter(leftover.id, ignore_missing=False, if_revision=revision)
        except sdk.PreconditionFailedException:
            # Changed since the read (bound, associated, retagged): not a
            # failure, just no longer a leftover as far as this sweep knows.
            return False
        return True

    try:
        return client.read(f"delete {what}", conditional_delete)
    except NotFound:
        return False
