"""A request's step timeline, rebuilt from its event log. Pure functions.

The step runner (:mod:`talprov.reconcile.runner`) writes one event line for each
thing that happens to a step: ``provisioning started``, ``step NAME done``,
``attempt N failed, retry in Ss: NAME: error``, ``failed (why): NAME: error``,
``NAME: waiting reason`` (a step that returned Retry) and ``provisioned: ...``.
Those lines, with the record's current step, are enough to say when each step
started, how long it took, how often it was retried and what went wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from talprov.providers.types import Stage

_DONE = re.compile(r"^step (?P<step>\S+) done$")
_RETRY = re.compile(r"^attempt \d+ failed, retry in \S+: (?P<step>[^:\s]+): ")
_FAILED = re.compile(r"^failed \([^)]*\): (?P<step>[^:\s]+): ")
_STARTED = ("provisioning started", "request created")


@dataclass
class StepLine:
    """One provisioning step as the timeline shows it."""

    name: str
    status: str = "waiting"  # waiting | running | done | failed
    started: datetime | None = None
    finished: datetime | None = None
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def duration(self, now: datetime) -> float | None:
        """Seconds from start to finish (to ``now`` while running); None before it starts."""
        if self.started is None:
            return None
        end = self.finished or now
        return max(0.0, (end - self.started).total_seconds())


def _step_of(message: str, names: Sequence[str]) -> tuple[str, str] | None:
    """``(step, kind)`` that ``message`` is about, or None."""
    for pattern, kind in ((_DONE, "done"), (_RETRY, "retry"), (_FAILED, "failed")):
        match = pattern.match(message)
        if match and match.group("step") in names:
            return match.group("step"), kind
    head, sep, _rest = message.partition(": ")
    if sep and head in names:
        return head, "note"
    return None


def build_timeline(
    step_names: Sequence[str],
    events: Sequence[tuple[datetime, str]],
    *,
    stage: Stage,
    current_step: str | None,
    step_started_at: datetime | None,
) -> list[StepLine]:
    """Every provisioning step with its start, end, retries and errors.

    A step starts when the one before it finished (the first when provisioning
    started). A request provisioned again after a deletion starts a new life at
    its last ``request created`` event; only that life is shown. ``events`` are
    ``(at, message)`` oldest first.
    """
    lines = {name: StepLine(name) for name in step_names}
    ordered = [lines[name] for name in step_names]
    start_of_life = 0
    for index, (_at, message) in enumerate(events):
        if message.startswith("request created"):
            start_of_life = index
    previous_end: datetime | None = None
    for at, message in events[start_of_life:]:
        if message in _STARTED or message.startswith("request created"):
            previous_end = at
            continue
        found = _step_of(message, step_names)
        if found is None:
            continue
        line = lines[found[0]]
        kind = found[1]
        if line.started is None:
            line.started = previous_end or at
        if kind == "done":
            line.status, line.finished = "done", at
            previous_end = at
        elif kind == "retry":
            line.retries += 1
            line.errors.append(message)
        elif kind == "failed":
            line.status, line.finished = "failed", at
            line.errors.append(message)
        else:
            line.notes.append(message.partition(": ")[2])
    if current_step in lines and stage in (Stage.PENDING, Stage.PROVISIONING):
        line = lines[current_step]
        if line.status == "waiting":
            line.status = "running"
            line.started = line.started or step_started_at or previous_end
    return ordered
