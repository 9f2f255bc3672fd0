"""Second instances of one request: terminated when the reconciler finds them listed.

A launch retried after a crash while EC2's listing still lagged behind the
first one can leave two live instances claiming one request.
``ensure-instance`` and ``wait-running`` terminate every claimant besides the
adopted one they see; one that EC2 lists only after the request is provisioned
is seen by no step of it. The reconciler sees it beside the recorded instance
in its pass's listing and has it terminated here (``RemovesSecondMachines``,
:mod:`talprov.reconcile.second_machines`), once both instances are read again
and the recorded one still lives with the request's tags. No step of this
driver records another instance while the one it recorded lives, so the
recorded one is always the request's.

An instance belongs to exactly one request: the one its ``talprov-request``
tag names, else the member at its launch index in its call's member list
(:func:`talprov.aws.members.request_of`). The other members of that list are
its call's other requests, not its own: an instance is terminated as a second
instance only of the request it belongs to, which a batch member that is
another request's recorded instance never is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from talprov.aws.instances import (
    ADOPTABLE_STATES,
    describe_ids,
    instance_request,
    tags_of,
    terminate,
)
from talprov.providers.ownership import is_owned
from talprov.providers.types import Machine, Owner

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

log = logging.getLogger(__name__)


def remove_second(ec2: EC2Client, owner: Owner, machine: Machine, kept: str) -> str | None:
    """Terminate the instance ``machine.infra_id``, a second instance of
    ``machine.request_id`` whose record names the instance ``kept``; the event
    line when it did.

    Both instances are read again first, with one DescribeInstances: the listing
    that showed them may be minutes old. Refused (None, nothing done) unless the
    kept instance is live (not shutting down or terminated) and both carry
    ``owner``'s installation and instance tags and belong to that request (by
    request tag, else launch index and member list): the request must never lose
    its only instance, and an instance is never terminated for a request it only
    lists. Idempotent: an instance already gone or on its way out is success
    (None). Raises ``AuthError`` or ``Transient``.
    """
    instance_id = machine.infra_id
    rid = machine.request_id
    if rid is None or kept == instance_id:
        return None
    read = describe_ids(ec2, [instance_id, kept])
    second, keep = read.get(instance_id), read.get(kept)
    if second is None or _state(second) not in ADOPTABLE_STATES:
        return None  # gone already, or going
    if keep is None or _state(keep) not in ADOPTABLE_STATES:
        log.warning("instance %s (the instance of request %s) is gone; %s left alone",
                    kept, rid, instance_id)
        return None
    if not (_belongs(second, owner, rid) and _belongs(keep, owner, rid)):
        log.warning("instance %s is not a second instance of request %s beside instance %s "
                    "(tags or owner differ); left alone", instance_id, rid, kept)
        return None
    terminate(ec2, [instance_id])
    return (f"terminating instance {instance_id}, a second instance of this request (a "
            "launch retried while EC2's listing lagged behind the first)")


def _state(raw: Mapping[str, Any]) -> str:
    return str(raw.get("State", {}).get("Name", ""))


def _belongs(raw: Mapping[str, Any], owner: Owner, request_id: str) -> bool:
    """Whether the instance ``raw`` carries ``owner``'s tags and belongs to
    ``request_id`` (not merely lists it among its call's members). Pure."""
    return is_owned(tags_of(raw), owner) and instance_request(raw) == request_id
