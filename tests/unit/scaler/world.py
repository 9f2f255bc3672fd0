"""A simulated world for plan tests: a provider that settles every request in one pass.

``apply`` carries out a plan's actions the way the apply loop will (create a
request, mark a victim deprovisioning); ``advance`` lets the provider work: new
requests become provisioned (or failed, when ``fail_creates``), deprovisioning
ones disappear. Nothing here is part of talprov: it stands in for the store and
the request reconciler.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from talprov.providers.types import Stage
from talprov.scaler.actions import ActionKind, Plan
from talprov.scaler.models import ClusterSpec
from talprov.scaler.observed import ObservedMachine, SetBackoff, next_backoff
from talprov.scaler.plan import plan
from talprov.scaler.setplan import quorum
from talprov.scaler.spec import load_spec
from talprov.scaler.templates import seeded_names, template_hash

START = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=1)


def make_spec(
    *,
    cp: int = 3,
    workers: int = 2,
    version: str = "v1.13.9",
    surge: int | str = 1,
    unavailable: int | str = 0,
    domains: tuple[str, ...] = (),
    delete_order: str = "oldest",
    extra_workers: dict[str, int] | None = None,
    max_unhealthy: str = "40%",
    cp_surge: int = 1,
) -> ClusterSpec:
    """A cluster spec text built from parameters and loaded through load_spec."""
    domain_list = ", ".join(domains)
    parts = [
        f"kind: Cluster\nname: demo\ntalos: {{version: {version}}}\n",
        "kind: MachineClass\nname: small\nprovider: fake\n"
        f"provider_data: {{size: small}}\nfailureDomains: [{domain_list}]\n",
        f"kind: ControlPlane\nmachineClass: {{name: small, size: {cp}}}\n"
        f"update: {{maxSurge: {cp_surge}}}\n"
        f"remediation: {{maxUnhealthy: '{max_unhealthy}'}}\n"
        'config: {inline: "version: v1alpha1\\nmachine: {type: controlplane}"}\n',
    ]
    for name, size in {"workers": workers, **(extra_workers or {})}.items():
        parts.append(
            f"kind: Workers\nname: {name}\nmachineClass: {{name: small, size: {size}}}\n"
            f"update: {{maxSurge: {_yaml(surge)}, maxUnavailable: {_yaml(unavailable)}}}\n"
            f"deleteOrder: {delete_order}\n"
            f"remediation: {{maxUnhealthy: '{max_unhealthy}'}}\n"
            'config: {inline: "version: v1alpha1\\nmachine: {type: worker}"}\n'
        )
    return load_spec("---\n".join(parts), "cluster.yaml", Path("."))


def _yaml(value: int | str) -> str:
    return str(value) if isinstance(value, int) else f"'{value}'"


@dataclass
class World:
    now: datetime = START
    fail_creates: bool = False
    machines: dict[str, ObservedMachine] = field(default_factory=dict)
    backoff: dict[str, SetBackoff] = field(default_factory=dict)
    creates: int = 0
    deletes: int = 0
    passes: int = 0

    def observed(self) -> list[ObservedMachine]:
        return list(self.machines.values())

    def add(self, machine: ObservedMachine) -> None:
        self.machines[machine.request_id] = machine

    def plan(self, spec: ClusterSpec) -> Plan:
        return plan(spec, self.observed(), self.now, self.backoff,
                    seeded_names(f"pass-{self.passes}"))

    def apply(self, result: Plan) -> None:
        for action in result.actions:
            if action.action in (ActionKind.CREATE, ActionKind.REPLACE):
                assert action.create is not None
                assert action.template_hash is not None
                assert action.request not in self.machines
                self.creates += 1
                self.add(ObservedMachine(
                    request_id=action.request, set_name=action.set, stage=Stage.PENDING,
                    template_hash=action.template_hash, created_at=self.now,
                    domain=action.domain,
                ))
            victim = action.replaces if action.action is ActionKind.REPLACE else (
                action.request if action.action is ActionKind.DELETE else None)
            if victim is not None:
                self.deletes += 1
                old = self.machines[victim]
                assert old.stage not in (Stage.DEPROVISIONING, Stage.GONE)
                if action.action is ActionKind.DELETE:
                    # QA: deletes carried no failure domain; it is the victim's.
                    assert action.domain == old.domain, (action, old)
                self.machines[victim] = replace(old, stage=Stage.DEPROVISIONING)

    def advance(self) -> None:
        self.now += STEP
        for request_id, machine in list(self.machines.items()):
            if machine.stage is Stage.DEPROVISIONING:
                del self.machines[request_id]
            elif machine.stage in (Stage.PENDING, Stage.PROVISIONING):
                if self.fail_creates:
                    self.machines[request_id] = replace(
                        machine, stage=Stage.FAILED, error="QuotaExceeded: vCPU limit")
                    self.backoff[machine.set_name] = next_backoff(
                        self.backoff.get(machine.set_name), self.now)
                else:
                    self.machines[request_id] = replace(
                        machine, stage=Stage.PROVISIONED, provisioned_at=self.now,
                        machine_present=True)

    def step(self, spec: ClusterSpec) -> Plan:
        result = self.plan(spec)
        self.apply(result)
        self.advance()
        self.passes += 1
        return result

    def converge(self, spec: ClusterSpec, max_passes: int = 60) -> int:
        """Step until a plan is empty with nothing in flight; return the passes it took.

        An empty plan alone is not the end: a control plane waits for a member
        to finish before the next change. Fails when it never settles.
        """
        for count in range(max_passes):
            settled = self.settled()
            if self.step(spec).empty and settled:
                return count
        raise AssertionError(f"not converged after {max_passes} passes")

    def settled(self) -> bool:
        """Nothing being created or deleted."""
        return all(m.stage in (Stage.PROVISIONED, Stage.FAILED) for m in self.machines.values())

    # -- views used by assertions --------------------------------------------------
    def in_set(self, set_name: str) -> list[ObservedMachine]:
        return [m for m in self.machines.values() if m.set_name == set_name]

    def provisioned(self, set_name: str) -> int:
        return sum(1 for m in self.in_set(set_name)
                   if m.stage is Stage.PROVISIONED and m.machine_present is not False)

    def live(self, set_name: str) -> int:
        return sum(1 for m in self.in_set(set_name)
                   if m.stage not in (Stage.DEPROVISIONING, Stage.GONE))

    def matches(self, spec: ClusterSpec) -> bool:
        """Every set at its size, every machine provisioned and up to date, nothing else."""
        for set_name, machine_set in spec.sets.items():
            members = self.in_set(set_name)
            if len(members) != machine_set.size:
                return False
            domains = spec.domains(set_name)
            for m in members:
                if m.stage is not Stage.PROVISIONED or m.domain not in domains:
                    return False
                if m.template_hash != template_hash(spec, set_name, m.domain):
                    return False
        return all(m.set_name in spec.sets for m in self.machines.values())


def etcd_safe(world: World, set_name: str, result: Plan) -> bool:
    """Whether a plan's deletions of healthy control planes keep quorum of the current size."""
    members = [m for m in world.in_set(set_name)
               if m.stage in (Stage.PROVISIONED, Stage.DEPROVISIONING)
               or m.provisioned_at is not None]
    healthy = {m.request_id for m in members
               if m.stage is Stage.PROVISIONED and m.machine_present is not False}
    victims = {a.replaces or a.request for a in result.actions
               if a.set == set_name and a.action is not ActionKind.CREATE}
    remaining = len(healthy - victims)
    return not (healthy & victims) or remaining >= quorum(len(members))
