"""How talprov marks what it creates, so one listing finds exactly its machines.

Every driver stores these keys in whatever its platform offers (EC2 tags, vSphere
extraConfig, Proxmox tags, OpenStack tags and metadata) and lists machines by
them. Keys use only lower-case letters, digits and dashes so that every platform
can carry them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from talprov.providers.types import MachineRequest, Owner

INSTALLATION_KEY = "talprov-installation"
INSTANCE_KEY = "talprov-instance"
REQUEST_KEY = "talprov-request"
LABEL_PREFIX = "talprov-label-"
#: How a digest of a value starts (see :func:`label_digest`).
DIGEST_PREFIX = "h-"


def ownership_tags(owner: Owner, request: MachineRequest) -> dict[str, str]:
    """The tags that mark ``request``'s machine as owned by ``owner``."""
    tags = {
        INSTALLATION_KEY: owner.installation,
        INSTANCE_KEY: owner.instance,
        REQUEST_KEY: request.id,
    }
    for key, value in sorted(request.labels.items()):
        tags[LABEL_PREFIX + key] = value
    return tags


def is_owned(tags: dict[str, str], owner: Owner) -> bool:
    """Whether a machine carrying ``tags`` belongs to ``owner``."""
    return (
        tags.get(INSTALLATION_KEY) == owner.installation
        and tags.get(INSTANCE_KEY) == owner.instance
    )


def labels_from_tags(tags: dict[str, str]) -> dict[str, str]:
    """The request labels recorded in ``tags``."""
    return {k[len(LABEL_PREFIX):]: v for k, v in tags.items() if k.startswith(LABEL_PREFIX)}


def label_digest(value: str) -> str:
    """``h-`` and 24 hex digits of ``value``'s SHA-256: how a platform whose marks
    cannot hold ``value`` (Proxmox tags: ``[a-z0-9_.-]`` only) carries and lists
    it. Stable and one-way: a listed digest is compared by hashing the expected
    value (:func:`listed_label_is`). Pure."""
    return DIGEST_PREFIX + hashlib.sha256(value.encode()).hexdigest()[:24]


def listed_label_is(listed: str | None, expected: str) -> bool:
    """Whether a label value a listing returned is ``expected``: the value itself,
    or its digest (a value the platform could not carry, or one an earlier
    Proxmox driver digested because it started with ``h-``). A value that is
    itself the digest of another needs a 96-bit collision. Pure."""
    return listed is not None and listed in (expected, label_digest(expected))


def listed_label_among(listed: str | None, known: Iterable[str]) -> str | None:
    """The value of ``known`` that listed label value ``listed`` is (see
    :func:`listed_label_is`), else ``listed`` as it is. Pure."""
    for value in known:
        if listed_label_is(listed, value):
            return value
    return listed
