"""The provider contract: a provider is a short list of named, idempotent steps.

Each step has the shape *get → if done return → create → Retry(after=…)*. The
runner stores the step index and the provider's typed state atomically after every
step, so a crash resumes at the same step; because the step first looks for what it
would create (by a deterministic name or tag), resuming never creates twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

from talprov.providers.types import Health, Machine, MachineRequest, Owner, StepResult


class ProviderState(BaseModel):
    """Base of every provider's typed step state.

    The runner copies ``infra_id``, ``machine_uuid`` and ``addresses`` into the
    request's record after each step, so drivers only need to fill them in.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    infra_id: str | None = None
    machine_uuid: str | None = None
    addresses: list[str] = []


def _ignore_progress(task: str, done: int, total: int | None) -> None:
    """Shows nothing: the default of :attr:`Runtime.progress`."""


@dataclass
class Runtime:
    """What providers get from their host process: time, cache, image factory settings.

    The clock and sleeper are injected so that retry and timeout tests run
    instantly with a fake clock. ``progress`` receives (task, done, total) of
    long work. ``memo`` holds objects that layers above the contract build once
    per runtime (the Image Factory client: ``talprov.talos.factory.images_for``),
    so the contract needs to know nothing of them.
    """

    installation: str = "talprov"
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "talprov")
    factory_url: str = "https://factory.talos.dev"
    factory_verify_tls: bool | str = True
    # (username, password) of an authenticated Image Factory; never shown in a repr.
    factory_auth: tuple[str, str] | None = field(default=None, repr=False)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    progress: Callable[[str, int, int | None], None] = _ignore_progress
    memo: dict[str, object] = field(default_factory=dict, repr=False, compare=False)


DataT = TypeVar("DataT", bound=BaseModel)
StateT = TypeVar("StateT", bound=ProviderState)


@dataclass
class StepContext(Generic[DataT, StateT]):
    """Everything one step of one request sees.

    ``state`` is mutable: a step records what it learned or created there and the
    runner persists it when the step returns (or raises a retryable error).
    ``observed`` is the machine that this pass's single ``list_machines`` call saw
    for this request, if any, so waiting steps need no call of their own.
    ``listed`` says that call was made for this context: the reconciler sets it
    for every step that needs the listing, whose listing is asked after any
    worker that held the request before died or let go of it, so a request it
    does not show had no machine then (a step may trust that instead of looking
    the machine up itself). False where steps run without a listing.
    """

    request: MachineRequest
    data: DataT
    state: StateT
    owner: Owner
    runtime: Runtime
    observed: Machine | None = None
    listed: bool = False
    step_started_at: float = 0.0
    events: list[str] = field(default_factory=list)
    #: Set by the runner while a pipelined step (``Step.pipelined``) runs a batch.
    on_finished: Callable[[StepResult | BaseException], None] | None = field(
        default=None, repr=False, compare=False)

    def event(self, message: str) -> None:
        """Record a line in the request's event log (never pass secrets here)."""
        self.events.append(message)

    def finished(self, outcome: StepResult | BaseException) -> None:
        """Tell the runner this request's outcome of the step as soon as it is known,
        while the batch's other requests still run.

        For a step built with ``pipelined=True`` a request that is done goes on to
        its next steps inside this call, so call it from the thread that ran the
        request, once, and return the same outcome from ``run_batch``. A no-op
        for other steps. ``talprov.providers.batching.one_by_one`` and
        ``steps_side_by_side`` call it. Raises nothing.
        """
        if self.on_finished is not None:
            self.on_finished(outcome)

    def elapsed(self) -> float:
        """Seconds since the current step first ran for this request."""
        return self.runtime.clock() - self.step_started_at


StepFn = Callable[[StepContext[Any, Any]], StepResult]
# A batch step may fail some of its requests and not others: it returns the
# exception in that request's place instead of raising for all.
BatchStepFn = Callable[
    [Sequence[StepContext[Any, Any]]], Sequence[StepResult | BaseException]
]


@dataclass(frozen=True)
class Step:
    """A named, idempotent step.

    ``run`` handles one request. ``run_batch``, when given, handles several requests
    that are at this step in the same pass of the same provider instance in one go
    (one API call for many machines); it returns one result per context, in order
    (an exception in the place of a request that failed), and must be just as
    idempotent as ``run``. A driver that batches writes only ``run_batch`` and
    builds its step with :meth:`batched`.

    ``timeout`` is how many seconds the step may take for one request, counted
    from the moment it first ran for that request (``StepContext.elapsed``);
    ``None`` means no limit. The runner enforces it: a step that still returns
    ``Retry`` after that long fails the request with ``StepTimeout`` (its reason
    kept in the message). A step that finishes late is done, and errors keep
    their own class, so steps need no deadline checks of their own.

    ``needs_listing=False`` promises that the step neither reads
    ``StepContext.observed`` (it is None then) nor creates or deletes a machine,
    so nothing it does depends on the pass's ``list_machines`` answer. The
    reconciler may then run it while that listing is still on its way (one
    round trip less per pass, e.g. for an image lookup). The default, True,
    runs the step only once the listing is in.

    ``pipelined=True``: a request this step is done with goes on to its next
    steps at once, alone, in the worker that ran it, instead of waiting for the
    rest of its batch (the batch's requests end one after another, e.g. clones
    of one template). Where it got is stored with the batch's outcomes, in one
    transaction; a crash before that write resumes it at this step, so this
    step and the ones after it must find what such a run made, as every step
    must after a crash. It takes a ``run_batch`` that tells each outcome as it
    is known (``StepContext.finished``); one that does not makes the batch go
    on together.

    ``found_again=True`` promises that a request this step is done with (it
    returned None) holds nothing in its state that a restart could not learn by
    running the steps again from the last stored one: the step only looked
    things up, or what it made carries a name or tag that it (or a step before
    it) looks for first. Its outcome is then not stored on its own: the request
    goes on to its next step at once, and the outcomes are stored together with
    the first one that is stored (one write less per request and step). A crash
    before that write resumes the request at the last stored step, which finds
    what the steps after it made. A step that waits (``Retry``) or fails is
    stored as always. Before a step that creates a machine (``creates_machine``)
    the runner reads the stored versions of the requests holding such unstored
    outcomes: one deleted meanwhile stops there, not after a machine was made
    for it.

    ``creates_machine=True`` says the step makes the request's machine (launches
    an instance, boots a server, clones or creates a VM). Only before such a step
    does the runner pay that version read; before any other step a deleted
    request is stopped by its next version-checked write, having made nothing to
    lose. It needs the listing (``needs_listing``): a step that creates may only
    do so once it has looked for what a crashed run made.
    """

    name: str
    run: StepFn
    run_batch: BatchStepFn | None = None
    timeout: float | None = None
    needs_listing: bool = True
    pipelined: bool = False
    found_again: bool = False
    creates_machine: bool = False

    def __post_init__(self) -> None:
        if self.creates_machine and not self.needs_listing:
            raise ValueError(f"step {self.name}: creates_machine needs needs_listing")

    @classmethod
    def batched(cls, name: str, run_batch: BatchStepFn, *, timeout: float | None = None,
                needs_listing: bool = True, pipelined: bool = False,
                found_again: bool = False, creates_machine: bool = False) -> Step:
        """A step whose ``run`` is ``run_batch`` on a batch of one."""
        return cls(name, run_one_of(run_batch), run_batch, timeout, needs_listing, pipelined,
                   found_again, creates_machine)


def run_one_of(run_batch: BatchStepFn) -> StepFn:
    """A single-request step function that runs ``run_batch`` on a batch of one.

    The batch's one outcome is returned, or raised when it is an exception.
    """

    def run(ctx: StepContext[Any, Any]) -> StepResult:
        (outcome,) = run_batch([ctx])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return run


@runtime_checkable
class Provider(Protocol):
    """One configured provider instance (``providers.<name>`` in talprov.yaml).

    Implementations are classes constructed as ``Cls(name, config, runtime)`` where
    ``config`` is an instance of ``config_model``; they are found through the
    ``talprov.providers`` entry-point group.
    """

    type_name: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]
    data_model: ClassVar[type[BaseModel]]
    state_model: ClassVar[type[ProviderState]]

    name: str

    def steps(self) -> Sequence[Step]:
        """The provisioning steps, in order. Each is idempotent."""
        ...

    def deprovision(self, ctx: StepContext[Any, Any]) -> StepResult:
        """Remove the request's machine and everything talprov created for it.

        Idempotent: a machine that is already gone is success (return ``None``).
        Return ``Retry`` while removal is in progress. Raises ``ProviderError``
        subclasses; ``AuthError`` is permanent.
        """
        ...

    def list_machines(self, owner: Owner) -> list[Machine]:
        """Every machine this installation owns for this instance, in one listing.

        Found by ownership tags/labels, so the cost does not grow with the number
        of requests. Read-only and idempotent. Raises ``AuthError`` or
        ``Transient``.
        """
        ...

    def health(self) -> Health:
        """Whether the platform answers with these credentials. Never raises."""
        ...


class ProviderClass(Protocol):
    """The class side of a provider, as loaded from an entry point."""

    type_name: str
    config_model: type[BaseModel]
    data_model: type[BaseModel]
    state_model: type[ProviderState]

    def __call__(self, name: str, config: Any, runtime: Runtime) -> Provider: ...


@dataclass(frozen=True)
class Leftover:
    """Something talprov created for a request that no machine uses (yet or any more).

    A detached port, an unassociated floating IP: a create that crashed between
    making the part and making the machine, or a delete that removed the machine
    and died before its parts, leaves these behind. ``request_id`` is the request
    named in its ownership tags (``None`` when it carries none).
    """

    kind: str
    id: str
    request_id: str | None


@runtime_checkable
class SweepsLeftovers(Protocol):
    """Optional: a provider whose machines have parts that can leak on their own.

    The reconciler lists leftovers, *then* reads which requests the store still
    holds, and deletes only leftovers of requests it does not hold. A request is
    stored before any of its steps run, so a part made by a create in flight always
    belongs to a held request and is never swept from under it.
    """

    def list_leftovers(self, owner: Owner) -> list[Leftover]:
        """Every part this installation owns for this instance that no machine uses.

        One listing per kind of part, whatever the number of requests. Read-only
        and idempotent. Raises ``AuthError`` or ``Transient``.
        """
        ...

    def delete_leftover(self, owner: Owner, leftover: Leftover) -> None:
        """Delete one leftover. Idempotent: already gone is success.

        Refuses (does nothing) when the part is in use again or is not owned by
        ``owner``. Raises ``AuthError`` or ``Transient``.
        """
        ...


@runtime_checkable
class RemovesSecondMachines(Protocol):
    """Optional: a provider that can remove a request's *second machine*.

    A second machine carries a request's ownership marks but is not the machine
    the request's record names (``infra_id``): a create started again while the
    first one still ran, on a platform that lets both succeed. The reconciler
    finds them in its pass's listing (no call of their own) and asks for their
    removal only for a request it holds the lease of meanwhile, whose recorded
    machine the listing shows too, and whose machine-creating steps
    (``Step.creates_machine``) are behind it or which is provisioned; never for
    one being deleted (its deprovision removes what it finds). The listing may
    be minutes old by then: the provider checks that the recorded machine
    still exists before it removes the other.

    A driver implements this only when none of its steps records a new
    ``infra_id`` while the machine recorded before still legitimately exists (a
    driver that replaces a machine on purpose must not).
    """

    def remove_second_machine(self, owner: Owner, machine: Machine, kept: str) -> str | None:
        """Destroy ``machine``, a listed second machine of ``machine.request_id``,
        without a graceful shutdown (it is nobody's machine); ``kept`` is the
        ``infra_id`` of the machine the request's record names.

        Reads both machines again first (one read where the platform allows) and
        refuses (does nothing, returns None) unless both exist, are owned by
        ``owner`` and are marked with ``machine.request_id`` (and are no
        templates, where the platform has them): a request never loses its
        only machine, however old the listing that showed both. Returns the
        line for the request's events when it destroyed the machine; None when
        it was gone already or refused. Idempotent: a machine already gone is
        success. Raises ``AuthError`` or ``Transient`` (another
        ``ProviderError`` when the platform refuses).
        """
        ...


@runtime_checkable
class NamesEndpoint(Protocol):
    """Optional: a provider that can say where its platform's API is.

    Shown next to errors that block an instance ("unreachable at URL"), so the
    value must never carry credentials: use :func:`endpoint_without_secrets`.
    """

    def endpoint(self) -> str:
        """The API endpoint (URL, host or region), without credentials. Never raises."""
        ...


@runtime_checkable
class SharesConnections(Protocol):
    """Optional: a provider whose SDK keeps a pool of HTTP connections.

    The reconciler runs up to the instance's ``concurrency`` steps at once on one
    provider object; a pool smaller than that makes urllib3 discard the extra
    connections (warning "Connection pool is full" for each) and open new ones.
    """

    def use_concurrency(self, calls: int) -> None:
        """Size the pools for ``calls`` concurrent calls (on top of any the provider
        makes in parallel itself). Called once, right after construction, before
        any call; idempotent; never raises."""
        ...


@runtime_checkable
class ChecksRequests(Protocol):
    """Optional: checks of a request that need no cloud call, run before it is recorded.

    The CLI (``machine create``, ``apply``/``plan``) and the API call this after
    ``provider_data`` validated against ``data_model`` and before anything is
    stored, so that what can be known at create time fails at create time:
    ``provider_data`` against the instance's settings, image prerequisites,
    architecture or platform support.
    """

    def check_request(self, request: MachineRequest) -> None:
        """Raise ``InvalidRequest`` naming the field when ``request`` cannot work here.

        Must make no network call and change nothing; idempotent.
        """
        ...


def endpoint_without_secrets(url: str) -> str:
    """``url`` without user, password, query or fragment: safe for logs and status."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return url.split("?", 1)[0].rsplit("@", maxsplit=1)[-1]
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
