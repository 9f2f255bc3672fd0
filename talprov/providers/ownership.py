"""How talprov marks what it creates, so one listing finds exactly its machines.

Every driver stores these keys in whatever its platform offers (EC2 tags, vSphere
extraConfig, Proxmox tags, OpenStack tags and metadata) and lists machines by
them. Keys use only lower-case letters, digits and dashes so that every platform
can carry them.
"""

from __future__ import annotations

from talprov.providers.types import MachineRequest, Owner

INSTALLATION_KEY = "talprov-installation"
INSTANCE_KEY = "talprov-instance"
REQUEST_KEY = "talprov-request"
LABEL_PREFIX = "talprov-label-"


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
