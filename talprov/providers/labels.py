"""The labels talprov itself puts on requests, in one place.

Labels travel with a request to its machine (drivers store them through
:mod:`talprov.providers.ownership`), so drivers read some of them too: the
Proxmox driver spreads the members of one set over nodes. Two kinds of set
exist and each has its own owner label:

* a *machine set* of a cluster (a ``ControlPlane`` or ``Workers`` document of a
  cluster spec): its requests carry :data:`LABEL_CLUSTER` and :data:`LABEL_SET`;
* a *request set* (``/v1/machine-request-sets``): its members carry
  :data:`LABEL_REQUEST_SET`. Members made before that label existed carry only
  ``talprov.set=<request set>`` (see ``talprov.sets``).

Every key uses the reserved ``talprov.`` prefix, which cluster specs refuse in
their own labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

#: The cluster (spec name) a request was created for by the scaler.
LABEL_CLUSTER = "talprov.cluster"
#: The machine set of that cluster.
LABEL_SET = "talprov.set"
#: The failure domain of the machine set a request was placed in.
LABEL_DOMAIN = "talprov.domain"
#: The role of a machine (``controlplane`` or ``worker``) the scaler gives it.
LABEL_ROLE = "talprov.role"
#: The template hash a request was created from (outdated ones are replaced).
LABEL_TEMPLATE = "talprov.template"
#: The request set (``/v1/machine-request-sets``) a request is a member of.
LABEL_REQUEST_SET = "talprov.request-set"

#: Label keys a role is read from, first found wins: ``role`` is what API users
#: set on a request set's template, ``talprov.role`` what the scaler sets.
ROLE_LABELS = ("role", LABEL_ROLE)
#: Role values that mean a control-plane machine.
CONTROL_PLANE_ROLES = frozenset({"controlplane", "control-plane", "control_plane", "init"})


def role_of(labels: Mapping[str, str]) -> str:
    """The lower-cased role in ``labels``, or "" when none is set. Pure."""
    for key in ROLE_LABELS:
        if key in labels:
            return labels[key].lower()
    return ""


def is_control_plane(labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` name a control-plane role. Pure."""
    return role_of(labels) in CONTROL_PLANE_ROLES


#: A set as (owner label, set name); None for a request that belongs to no set.
SetGroup = tuple[str, str] | None


def set_group(labels: Mapping[str, str]) -> SetGroup:
    """The set a request belongs to as (owner label, set name), or None.

    A request-set member is grouped by :data:`LABEL_REQUEST_SET`, anything else
    by :data:`LABEL_SET` (a cluster machine set, or a request-set member made
    before the request-set label existed). Pure.
    """
    for key in (LABEL_REQUEST_SET, LABEL_SET):
        value = labels.get(key)
        if value is not None:
            return key, value
    return None


# -- what a label may be ---------------------------------------------------------
# One rule for every way a request is made (request files, cluster specs, the HTTP
# API): a request one of them accepts, the others accept too.

#: Label keys look like Kubernetes label keys.
LABEL_KEY_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_./]{0,253}[A-Za-z0-9])?$"
#: Values exclude NUL, which PostgreSQL text columns cannot hold.
LABEL_VALUE_PATTERN = r"^[^\x00]{0,1024}$"
#: Labels are indexed as (key, value) in the store; a PostgreSQL b-tree entry
#: holds at most 2704 bytes, so the value is bounded in UTF-8 bytes, not only in
#: characters (1024 four-byte characters would not fit).
LABEL_VALUE_MAX_BYTES = 1024
#: Most labels one request may carry.
MAX_LABELS = 64


def _label_value_fits(value: str) -> str:
    if len(value.encode("utf-8", "surrogatepass")) > LABEL_VALUE_MAX_BYTES:
        raise ValueError(f"must be at most {LABEL_VALUE_MAX_BYTES} bytes in UTF-8")
    return value


LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[
    str, StringConstraints(pattern=LABEL_VALUE_PATTERN), AfterValidator(_label_value_fits)
]
#: A request's labels, as every front door checks them.
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS)]

#: The prefix of the labels talprov itself sets; no front door accepts it.
RESERVED_PREFIX = "talprov."


def reserved_keys(labels: Mapping[str, str]) -> list[str]:
    """The keys of ``labels`` that use the reserved prefix, in any case, in their
    order. A key's prefix is a DNS subdomain (Kubernetes' label key rule), and
    DNS names mean the same in any case: ``TALPROV.set`` reads as talprov's own
    label to a person, so it is refused as well. Pure."""
    return [key for key in labels if key.lower().startswith(RESERVED_PREFIX)]


def _no_reserved_keys(labels: dict[str, str]) -> dict[str, str]:
    # A request that carried talprov.cluster/talprov.set would be counted as a
    # member of that cluster's machine set by the scaler, which would then
    # delete one of the set's real machines to keep its size: the labels
    # talprov sets must come from talprov only. Every such key is named, so one
    # correction fixes them all.
    reserved = reserved_keys(labels)
    if reserved:
        named = ", ".join(repr(key) for key in reserved)
        raise ValueError(f"label{'s' if len(reserved) > 1 else ''} {named}: the "
                         f"{RESERVED_PREFIX} prefix is reserved (in any case) for the labels "
                         "talprov sets itself")
    return labels


#: Labels as a person or client may give them: :data:`Labels`, without the
#: reserved ``talprov.`` keys.
UserLabels = Annotated[Labels, AfterValidator(_no_reserved_keys)]
