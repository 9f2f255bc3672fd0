"""A service the Keystone catalog has no endpoint for, in the operator's words.

openstacksdk does not fail when the catalog lacks a service in the configured
region or interface: it hands out a stand-in proxy that raises
``ServiceDisabledException`` on first use, an error that reads like a broken
installation (and, translated as a configuration problem, like refused
credentials). It is the instance's settings that are wrong: every request of the
instance fails alike until ``region`` or ``interface`` is fixed, so it becomes
an ``InstanceUnavailable`` naming the field and what the catalog offers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from talprov.providers.errors import InstanceUnavailable

#: The phrase openstacksdk's stand-in gives as the reason when the catalog lacks
#: the endpoint (openstack/service_description.py); other reasons are settings
#: that disabled the service in clouds.yaml.
NOT_IN_CATALOG = "not present in the service catalog"


def missing_endpoint(instance: str, service: str, region: str | None, interface: str,
                     catalog: Iterable[Mapping[str, Any]] | None,
                     reason: str) -> InstanceUnavailable:
    """The error for ``service`` having no ``interface`` endpoint in ``region``.

    ``catalog`` is the token's catalog in Keystone v3 form (services with their
    endpoints' ``region_name``/``region_id`` and ``interface``), None when unknown.
    The field named is ``interface`` when the region has the service under other
    interfaces only, else ``region``. Pure.
    """
    where = f"providers.{instance}" if instance else "the provider's settings"
    if NOT_IN_CATALOG not in reason:
        return InstanceUnavailable(f"{where}: the {service} service is disabled by the "
                                   f"cloud's settings ({reason.strip()})")
    endpoints = [e for s in catalog or () if s.get("type") == service
                 for e in s.get("endpoints") or ()]
    regions = sorted({str(_region(e)) for e in endpoints if _region(e)})
    here = sorted({str(e.get("interface")) for e in endpoints
                   if _region(e) == region and e.get("interface")})
    if here:
        return InstanceUnavailable(
            f"{where}.interface: the Keystone catalog has no {interface!r} endpoint of "
            f"the {service} service in region {region!r} (it has: {', '.join(here)})")
    offered = (f" (the catalog has it in: {', '.join(regions)})" if regions
               else " (nor in any other region)" if catalog is not None and region else "")
    place = f"in region {region!r}" if region else "in any region"
    return InstanceUnavailable(
        f"{where}.region: the Keystone catalog has no {interface!r} {service} endpoint "
        f"{place}{offered}")


def _region(endpoint: Mapping[str, Any]) -> Any:
    return endpoint.get("region_name") or endpoint.get("region_id") or endpoint.get("region")


def token_catalog(conn: Any) -> list[dict[str, Any]] | None:
    """The service catalog of ``conn``'s current token (v3 form), without a call:
    the token was fetched already when the SDK looked the endpoint up. None when
    it cannot be read. Never raises."""
    try:
        access = conn.session.auth.get_access(conn.session)
        return list(access.service_catalog.normalize_catalog())
    except Exception:  # only an aid to the message: never its own failure
        return None
