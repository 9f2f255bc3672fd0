"""Carrying out plans: the impure half of the scaler.

A scaler pass loads the recorded spec, observes the cluster's requests (from the
store) and its machines (one ``list_machines`` per provider instance, for
orphans), asks the pure :func:`~talprov.scaler.plan.plan` what to do, records the
creates and deletes in the store, and saves the set backoffs and orphan
sightings. The request reconciler then makes the requests real.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from functools import cache

from talprov.processes import local_worker_id
from talprov.providers.labels import LABEL_CLUSTER, LABEL_DOMAIN, LABEL_SET, LABEL_TEMPLATE
from talprov.providers.ownership import label_digest, listed_label_among, listed_label_is
from talprov.providers.protocol import Runtime
from talprov.providers.types import REQUEST_ID_PATTERN, MachineRequest, Stage
from talprov.reconcile.failures import resource_error_kind
from talprov.reconcile.listings import MachineListings
from talprov.reconcile.observing import machine_lost
from talprov.reconcile.reconciler import ProviderHandle
from talprov.scaler.actions import ActionKind, Plan
from talprov.scaler.clusterstate import (
    ClusterBeingDestroyed,
    ClusterState,
    UnreadableCluster,
)
from talprov.scaler.editing import SkippedClusters, claim_cluster_lease, holding_cluster
from talprov.scaler.models import ClusterSpec
from talprov.scaler.observed import (
    FAILED_CREATES,
    ObservedMachine,
    OrphanMachine,
    next_backoff,
)
from talprov.scaler.plan import plan, plan_destroy
from talprov.scaler.rollout import later_steps
from talprov.scaler.templates import NameGenerator, seeded_names
from talprov.secrets import redact
from talprov.store.errors import StoreKeyError
from talprov.store.records import RequestRecord
from talprov.store.store import Store

log = logging.getLogger(__name__)



# -- observation -------------------------------------------------------------------


def backoff_cause(error: str | None) -> str | None:
    """Why a failed request holds back its set's creates, by its stored ``error``. Pure.

    None for a machine that ran and then vanished outside talprov: creates work,
    so it is replaced at once. Out of capacity and over quota by their names;
    any other failure (a bad subnet) too, so a permanent error cannot loop.
    """
    if machine_lost(error):
        return None
    return resource_error_kind(error) or FAILED_CREATES



def observed_machine(record: RequestRecord) -> ObservedMachine:
    """A request record as the planner sees it."""
    labels = record.request.labels
    provisioned_at = record.updated_at if record.stage == Stage.PROVISIONED else None
    return ObservedMachine(
        request_id=record.request.id,
        set_name=labels.get(LABEL_SET, ""),
        stage=record.stage,
        template_hash=labels.get(LABEL_TEMPLATE, ""),
        created_at=record.created_at,
        marked_for_deletion=record.marked_for_deletion,
        domain=labels.get(LABEL_DOMAIN),
        error=record.error,
        provisioned_at=provisioned_at,
        # The reconciler turns a vanished machine into a failed request, which the
        # planner remediates; it needs no second opinion here.
        machine_present=None,
        unreadable=record.unreadable is not None,
    )


class Scaler:
    """Runs scaler passes for recorded clusters."""

    def __init__(
        self,
        store: Store,
        handles: Mapping[str, ProviderHandle],
        runtime: Runtime,
        *,
        names: NameGenerator | None = None,
        worker_id: str | None = None,
        lease_ttl: float = 60.0,
        listings: MachineListings | None = None,
    ) -> None:
        self.store = store
        self.handles = handles
        self.runtime = runtime
        self.names = names
        self.worker_id = worker_id or local_worker_id()
        self.lease_ttl = lease_ttl
        # The run loop hands in its reconciler's: one listing per instance and
        # round, one backoff, one warning per change of an instance's state.
        self.listings = listings or MachineListings(runtime.installation, runtime.clock)
        self.skipped = SkippedClusters()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.runtime.clock(), UTC)

    # -- records ---------------------------------------------------------------

    def record(self, spec: ClusterSpec, *, keep_autoscaled_sizes: bool = True,
               reseal: bool = False) -> ClusterState:
        """Record ``spec`` as the cluster's desired state (keeping backoff/orphans).

        With ``keep_autoscaled_sizes`` (``talprov apply``), autoscaled sets keep the
        size recorded before (see :meth:`ClusterSpec.keeping_autoscaled_sizes`);
        ``talprov scale`` and the autoscaler pass False: they set sizes on purpose.
        Call it inside :meth:`editing` when a run loop may be passing the cluster.
        A record sealed with another key raises :class:`UnreadableCluster` (a wrong
        key in the caller's environment must not overwrite it) unless ``reseal``:
        then it is replaced whole, its backoff and autoscaled sizes lost with it.
        Requests of the cluster sealed with the old key stay unreadable; they are
        set aside by the runner and can only be deleted. A cluster being destroyed
        raises :class:`ClusterBeingDestroyed` (reseal or not): a new record would
        drop the destroy mark and create machines while the old ones are deleted.
        """
        self.refuse_if_destroying(spec.name)
        previous = self.replaced_state(spec.name, reseal=reseal)
        if previous is not None and keep_autoscaled_sizes:
            spec = spec.keeping_autoscaled_sizes(previous.spec)
        state = ClusterState(spec=spec)
        if previous is not None:
            state.backoff = previous.backoff
            state.orphans_seen = previous.orphans_seen
            state.counted_failures = previous.counted_failures
        self.save(state)
        return state

    def refuse_if_destroying(self, name: str) -> None:
        """Raise :class:`ClusterBeingDestroyed` when cluster ``name`` is being
        destroyed, also when this store key cannot read its record (the mark is not
        sealed). Read-only; :meth:`record` calls it, a command may call it earlier
        to refuse before it asks anything."""
        body = self.store.get_cluster(name)
        if body is not None and body.get("destroying"):
            raise ClusterBeingDestroyed(name)

    def replaced_state(self, name: str, *, reseal: bool, warn: bool = True
                       ) -> ClusterState | None:
        """The recorded state a spec of cluster ``name`` is about to replace (what
        :meth:`record` keeps of it, what ``talprov plan`` compares with): None when
        there is none, or when this store key cannot read it and ``reseal`` says to
        seal it anew (logged at WARNING unless ``warn`` is False: a caller that
        calls :meth:`record` next, which says it).

        Raises :class:`UnreadableCluster` for an unreadable record without
        ``reseal``: the likelier cause is a wrong key in the caller's environment,
        and re-sealing would lock the record away from the right one. Read-only.
        """
        try:
            return self.state(name)
        except UnreadableCluster as exc:
            if not reseal:
                raise
            if warn:
                log.warning("cluster %s: this key cannot read its record (%s); reseal: "
                            "the spec replaces it whole", name, exc.reason)
            return None

    def editing(self, name: str, *, wait: float = 30.0,
                clock: Callable[[], float] | None = None,
                sleep: Callable[[float], None] | None = None) -> AbstractContextManager[None]:
        """Hold cluster ``name``'s lease around a change of its record (``record``,
        ``destroy``), so that a running pass cannot write its older copy over it.
        Waits up to ``wait`` seconds (on ``clock``, default the runtime's).
        Raises :class:`talprov.scaler.editing.ClusterBusy` when it stays taken."""
        return holding_cluster(self.store, name, worker_id=self.worker_id, wait=wait,
                               now=self.now, clock=clock or self.runtime.clock,
                               sleep=sleep or self.runtime.sleep)

    def state(self, name: str) -> ClusterState | None:
        """The recorded state of cluster ``name``, or None. Raises
        :class:`UnreadableCluster` when its sealed secrets cannot be read with this key."""
        body = self.store.get_cluster(name)
        if body is None:
            return None
        try:
            return ClusterState.load(body, self.store)
        except StoreKeyError as exc:
            # The codec's message names the cause, never the key; say which record.
            raise UnreadableCluster(name, str(exc)) from None

    def recorded_state(self, name: str) -> ClusterState | None:
        """:meth:`state`, also when this key cannot read the cluster's secrets: the
        state then has none and ``unreadable`` says why (enough to destroy the
        cluster, never to grow it)."""
        body = self.store.get_cluster(name)
        return None if body is None else ClusterState.load(body, self.store,
                                                           unreadable_ok=True)

    def save(self, state: ClusterState) -> None:
        self.store.put_cluster(state.spec.name, state.dump(self.store))

    def records(self, cluster: str) -> list[RequestRecord]:
        return self.store.list_requests(labels={LABEL_CLUSTER: cluster})

    def observe(self, state: ClusterState) -> tuple[list[ObservedMachine], list[OrphanMachine]]:
        """The cluster's requests and its orphans (tagged machines without a request)."""
        observed, orphans, _ = self._observe(state)
        return observed, orphans

    def _names(self, cluster: str, history: Sequence[str]) -> NameGenerator:
        """The ids a pass gives new requests: ``names`` when one was given, else
        derived from the cluster and every id it has recorded (gone ones too), so
        that ``talprov plan`` shows the very ids the next ``apply`` creates while
        nothing changed in between, and a changed history gives fresh ids."""
        if self.names is not None:
            return self.names
        digest = hashlib.sha256("\n".join(sorted(history)).encode()).hexdigest()
        return seeded_names(f"{cluster}/{digest}")

    def _observe(
        self, state: ClusterState
    ) -> tuple[list[ObservedMachine], list[OrphanMachine], NameGenerator]:
        spec = state.spec
        records = self.store.list_requests(labels={LABEL_CLUSTER: spec.name}, include_gone=True)
        names = self._names(spec.name, [r.request.id for r in records])
        live = [r for r in records if r.stage != Stage.GONE]
        known = {r.request.id for r in live}
        # Hashed once per observation, and only when a listing shows an unknown id.
        known_digests = cache(lambda: {label_digest(rid) for rid in known})
        now = self.now()
        orphans: list[OrphanMachine] = []
        seen_now: dict[str, datetime] = {}
        # To name an orphan's set and domain when it lists them as digests.
        domains = sorted({d.name for c in spec.machine_classes.values() for d in c.failure_domains})
        for instance in sorted({c.provider for c in spec.machine_classes.values()}):
            handle = self.handles.get(instance)
            if handle is None:
                continue
            listing = self.listings.listing(instance, handle.provider)
            if listing.machines is None:
                if listing.fresh and listing.changed:
                    log.warning("%s: cannot list machines for orphans: %s", instance,
                                redact(str(listing.error)))
                continue
            for machine in listing.machines:
                # A listing may carry a label value as its digest (Proxmox tags).
                if not listed_label_is(machine.labels.get(LABEL_CLUSTER), spec.name):
                    continue
                # A request id too may be listed as its digest (an old Proxmox VM
                # renamed by hand): a known request's machine is no orphan.
                if machine.request_id in known or machine.request_id in known_digests():
                    continue
                since = state.orphans_seen.get(machine.infra_id, now)
                seen_now[machine.infra_id] = since
                orphans.append(OrphanMachine(
                    infra_id=machine.infra_id, provider=instance, seen_since=since,
                    request_id=machine.request_id,
                    set_name=listed_label_among(machine.labels.get(LABEL_SET), spec.sets),
                    domain=listed_label_among(machine.labels.get(LABEL_DOMAIN), domains),
                ))
        state.orphans_seen = seen_now
        return [observed_machine(r) for r in live], orphans, names

    # -- passes -------------------------------------------------------------------

    def preview(self, state: ClusterState) -> Plan:
        """What a pass would do now; changes nothing."""
        return self.preview_steps(state, later=False)[0]

    def preview_steps(self, state: ClusterState, *, later: bool = True
                      ) -> tuple[Plan, list[Plan], bool]:
        """What a pass would do now, the passes after it while a change is spread
        over several (a rolling update; see :mod:`talprov.scaler.rollout`), and
        whether those end with nothing left to do. Changes nothing (``talprov plan``)."""
        observed, orphans, names = self._observe(state)
        if state.destroying:
            return plan_destroy(state.spec.name, observed, orphans, spec=state.spec), [], True
        first = plan(state.spec, observed, self.now(), state.backoff, names, orphans=orphans)
        if not later:
            return first, [], True
        steps, complete = later_steps(state.spec, observed, first, self.now())
        return first, steps, complete

    def run_pass(self, name: str) -> Plan | None:
        """One scaler pass for cluster ``name``: plan, then record the actions.

        Holds the cluster's lease while it runs (two planners at once would both
        create what is missing). Returns the plan carried out, or None when the
        cluster is not recorded or another worker is running its pass. Idempotent
        in effect: a second pass right after plans nothing new. Raises
        :class:`UnreadableCluster` for a cluster this key cannot read that is not
        being destroyed.
        """
        steps = self._locked_pass(name, later=False)
        return None if steps is None else steps[0]

    def run_pass_steps(self, name: str) -> tuple[Plan, list[Plan], bool] | None:
        """:meth:`run_pass`, with the passes after it while its change is spread over
        several, and whether those end with nothing left to do: what
        :meth:`preview_steps` showed before it, from the same observation (`apply`
        and `scale` show them as `plan` does). Raises and returns None as
        :meth:`run_pass` does."""
        return self._locked_pass(name, later=True)

    def _locked_pass(self, name: str, *, later: bool
                     ) -> tuple[Plan, list[Plan], bool] | None:
        if not claim_cluster_lease(self.store, name, owner=self.worker_id,
                                   ttl=self.lease_ttl, now=self.now()):
            self.skipped.note(self.store, name)
            return None
        self.skipped.ran(name)
        try:
            return self._run_pass(name, later=later)
        finally:
            self.store.release_cluster(name, owner=self.worker_id)

    def _run_pass(self, name: str, *, later: bool) -> tuple[Plan, list[Plan], bool] | None:
        state = self.recorded_state(name)
        if state is None:
            return None
        if state.unreadable is not None and not state.destroying:
            # Destroying needs no secrets; anything else might create a machine.
            raise UnreadableCluster(name, state.unreadable)
        observed, orphans, names = self._observe(state)
        self._update_backoff(state, observed)
        steps: list[Plan] = []
        complete = True
        if state.destroying:
            result = plan_destroy(name, observed, orphans, spec=state.spec)
        else:
            now = self.now()
            result = plan(state.spec, observed, now, state.backoff, names, orphans=orphans)
            if later:
                steps, complete = later_steps(state.spec, observed, result, now)
        self._carry_out(state, result)
        if state.destroying and not observed and not orphans:
            self.store.delete_cluster(name)
            return result, steps, complete
        self.save(state)
        return result, steps, complete

    def _update_backoff(self, state: ClusterState, observed: Sequence[ObservedMachine]) -> None:
        now = self.now()
        failed_now = {m.request_id for m in observed if m.stage == Stage.FAILED}
        for machine in observed:
            if machine.stage == Stage.FAILED and machine.request_id not in state.counted_failures:
                cause = backoff_cause(machine.error)
                if cause is not None:
                    state.backoff[machine.set_name] = next_backoff(
                        state.backoff.get(machine.set_name), now, cause=cause
                    )
        state.counted_failures = (state.counted_failures & {m.request_id for m in observed}) | (
            failed_now
        )
        for set_name in list(state.backoff):
            provisioned = any(m.set_name == set_name and m.stage == Stage.PROVISIONED
                              and m.provisioned_at is not None
                              and m.provisioned_at > state.backoff[set_name].until
                              for m in observed)
            if provisioned:
                # A machine came up after the backoff ended: the set is healthy again.
                del state.backoff[set_name]

    def _carry_out(self, state: ClusterState, result: Plan) -> None:
        for action in result.actions:
            if action.create is not None and action.action in (ActionKind.CREATE,
                                                               ActionKind.REPLACE):
                labels = dict(action.create.labels)
                if action.template_hash:
                    labels[LABEL_TEMPLATE] = action.template_hash
                self.store.create_request(action.create.model_copy(update={"labels": labels}),
                                          now=self.now())
            if action.action == ActionKind.REPLACE and action.replaces:
                self._delete(action.replaces)
            elif action.action == ActionKind.DELETE:
                if action.infra_id is not None and action.provider is not None:
                    self._delete_orphan(state, action.request, action.infra_id, action.provider)
                else:
                    self._delete(action.request)

    def _delete(self, request_id: str) -> None:
        try:
            self.store.request_deletion(request_id, now=self.now())
        except KeyError:
            log.info("request %s was already forgotten", request_id)

    def _delete_orphan(self, state: ClusterState, request_id: str, infra_id: str,
                       instance: str) -> None:
        # Recorded as a request being deleted, so the reconciler removes the
        # machine durably (and retries) like any other deletion.
        rid = request_id
        if not re.fullmatch(REQUEST_ID_PATTERN, rid):
            rid = "orphan-" + hashlib.sha256(infra_id.encode()).hexdigest()[:12]
        orphan = MachineRequest(id=rid, provider=instance,
                                talos_version=state.spec.talos_version,
                                labels={LABEL_CLUSTER: state.spec.name})
        existing = self.store.get_request(rid)
        if existing is None or existing.stage == Stage.GONE:
            record = self.store.create_request(orphan, now=self.now())
            self.store.save_progress(
                rid, expected_version=record.version, stage=Stage.DEPROVISIONING,
                step_index=0, step_name=None, state={"infra_id": infra_id}, error=None,
                attempts=0, next_attempt_at=None, step_started_at=None, infra_id=infra_id,
                machine_uuid=None, addresses=(), events=[f"orphan {infra_id}: deleting"],
                now=self.now(),
            )
        state.orphans_seen.pop(infra_id, None)

    def destroy(self, name: str) -> bool:
        """Mark cluster ``name`` for destruction; False when it is not recorded.
        Works for a cluster this store key cannot read too (it needs no secrets).
        Call it inside :meth:`editing` when a run loop may be passing the cluster:
        a pass writes back the copy it read, which would undo the mark."""
        state = self.recorded_state(name)
        if state is None:
            return False
        state.destroying = True
        self.save(state)
        return True

    def converged(self, name: str) -> bool:
        """Whether the cluster matches its spec: nothing to do and nothing in flight."""
        state = self.state(name)
        if state is None:
            return True
        return plan_converged(self.preview(state))


def plan_converged(result: Plan) -> bool:
    """Whether a cluster whose plan is ``result`` matches its spec: nothing to do
    and nothing in flight."""
    if result.actions:
        return False
    return all(s.provisioned == s.desired and s.provisioning == 0 and s.deleting == 0
               and s.outdated == 0 for s in result.sets)
