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

import re
from collections.abc import Callable, Mapping
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, WithJsonSchema

from talprov.providers.types import is_stored

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
# API, bare-metal selectors and inventory labels): Kubernetes' rule for labels
# (apimachinery's IsLabelKey / IsLabelValue), which Omni and the nodes the
# machines become follow too. Said in words, never as a regular expression.

#: The longest name part of a key, and the longest value.
LABEL_NAME_MAX = 63
#: The longest DNS-subdomain prefix of a key (before its '/').
LABEL_PREFIX_MAX = 253
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_NAME_WORDS = "letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
#: For the API's schema only (validation says what is wrong in words). A key's
#: prefix length cannot be said in a pattern without look-ahead: maxLength bounds
#: the whole key instead.
LABEL_KEY_SCHEMA = {
    "pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
               r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
    "maxLength": LABEL_PREFIX_MAX + 1 + LABEL_NAME_MAX,
}
LABEL_VALUE_SCHEMA = {"pattern": r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$",
                      "maxLength": LABEL_NAME_MAX}
#: Most labels one request may carry.
MAX_LABELS = 64


def _name_problem(name: str, what: str) -> str | None:
    if len(name) > LABEL_NAME_MAX:
        return f"{what}must be at most {LABEL_NAME_MAX} characters (has {len(name)})"
    if not _NAME.fullmatch(name):
        return f"{what}must be {_NAME_WORDS}"
    return None


def label_key_problem(key: str) -> str | None:
    """What is wrong with label key ``key`` by Kubernetes' rule, in words that
    follow "key " (``labels.x: key name must be ...``); None when nothing is. A key
    is a name of at most 63 letters, digits, '-', '_' and '.' (starting and ending
    with a letter or digit), optionally after a DNS-subdomain prefix of at most 253
    characters and a '/'. Pure."""
    if key.count("/") > 1:
        return "must have at most one '/', between a DNS-subdomain prefix and the name"
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "prefix before '/' is empty"
        if len(prefix) > LABEL_PREFIX_MAX:
            return (f"prefix before '/' must be at most {LABEL_PREFIX_MAX} characters "
                    f"(has {len(prefix)})")
        if not all(_DNS_LABEL.fullmatch(part) for part in prefix.split(".")):
            return ("prefix before '/' must be a DNS subdomain, lowercase letters, digits, "
                    "'-' and '.', each part between dots starting and ending with a letter "
                    "or digit")
    if not name:
        return "name is empty"
    return _name_problem(name, "name after '/' " if slash else "")


def label_value_problem(value: str) -> str | None:
    """What is wrong with a label value by Kubernetes' rule, in words; None when
    nothing is: empty, or at most 63 letters, digits, '-', '_' and '.', starting and
    ending with a letter or digit. Never quotes the value. Pure."""
    return None if value == "" else _name_problem(value, "")


def _checked(problem_of: Callable[[str], str | None]) -> Callable[[str, ValidationInfo], str]:
    def check(text: str, info: ValidationInfo) -> str:
        # A label recorded before this rule (a stored cluster spec, a stored
        # request's selector) stays readable: STORED data is not checked at all.
        problem = None if is_stored(info) else problem_of(text)
        if problem is not None:
            raise ValueError(problem)
        return text
    return check


LabelKey = Annotated[str, AfterValidator(_checked(label_key_problem)),
                     WithJsonSchema({"type": "string", **LABEL_KEY_SCHEMA})]
LabelValue = Annotated[str, AfterValidator(_checked(label_value_problem)),
                       WithJsonSchema({"type": "string", **LABEL_VALUE_SCHEMA})]
#: Labels as every front door checks them (and bare-metal selectors and inventory
#: labels, which follow the same rule).
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
