"""The provider contract, checked the same way against every provider type.

What every driver promises (docs/architecture.md): steps are idempotent and resumable,
``list_machines`` finds exactly the owner's machines in one listing, deprovision
treats "already gone" as success, provider_data is a strict, exported schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from talprov.providers.labels import LABEL_CLUSTER, LABEL_DOMAIN, LABEL_SET
from talprov.providers.ownership import listed_label_is
from talprov.providers.protocol import Provider, StepContext
from talprov.providers.types import MachineRequest, MachineState, Owner, Stage
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from tests.contract.environments import Environment

CONFIG = "version: v1alpha1\nmachine:\n  type: worker\n  token: contract-token\n"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'contract.db'}")
    s.migrate()
    return s


def request_for(env: Environment, rid: str, instance: str = "contract") -> MachineRequest:
    return MachineRequest(id=rid, provider=instance, talos_version=env.talos_version,
                          machine_config=SecretStr(CONFIG), labels=dict(env.labels),
                          provider_data=dict(env.provider_data))


def reconciler_for(env: Environment, store: Store, provider: Provider) -> Reconciler:
    return Reconciler(store, {provider.name: ProviderHandle(provider, 4)}, env.runtime)


def converge(reconciler: Reconciler, store: Store, stage: Stage) -> None:
    def done() -> bool:
        return all(r.stage in (stage, Stage.FAILED)
                   for r in store.list_requests(include_gone=True))

    assert reconciler.run_until(done, timeout=3600, interval=5)
    failed = [(r.request.id, r.error) for r in store.list_requests() if r.stage == Stage.FAILED]
    assert not failed, failed





def test_provision_list_and_deprovision(env: Environment, store: Store) -> None:
    provider = env.provider()
    reconciler = reconciler_for(env, store, provider)
    for rid in ("c-one", "c-two"):
        store.create_request(request_for(env, rid))
    converge(reconciler, store, Stage.PROVISIONED)

    owner = Owner(env.runtime.installation, "contract")
    machines = {m.request_id: m for m in provider.list_machines(owner)}
    assert set(machines) == {"c-one", "c-two"}
    for request_id, machine in machines.items():
        assert request_id is not None
        record = store.get_request(request_id)
        assert record is not None
        assert record.infra_id == machine.infra_id
        assert machine.state == MachineState.RUNNING
    assert env.platform_machines() == 2

    for rid in ("c-one", "c-two"):
        store.request_deletion(rid)
    converge(reconciler, store, Stage.GONE)
    assert provider.list_machines(owner) == []
    assert env.platform_machines() == 0


#: Legal request ids of awkward forms: ``h-`` (the Proxmox tag digest prefix), the
#: longest (63 characters), the shortest, digits only. Three: bare metal has three.
AWKWARD_IDS = ("h-web-1", "h-" + "0" * 60 + "a", "7")


def test_every_legal_request_id_lists_as_itself(env: Environment, store: Store) -> None:
    """The listing names each machine's request by the request's own id, so the
    drift check finds it: a request stays provisioned, pass after pass."""
    provider = env.provider()
    reconciler = reconciler_for(env, store, provider)
    for rid in AWKWARD_IDS:
        store.create_request(request_for(env, rid))
    converge(reconciler, store, Stage.PROVISIONED)

    owner = Owner(env.runtime.installation, "contract")
    assert sorted(m.request_id or "" for m in provider.list_machines(owner)) == sorted(AWKWARD_IDS)
    for _ in range(3):  # more than the drift check's missed listings before "lost"
        reconciler.run_pass()
    assert {r.request.id: r.stage for r in store.list_requests()} == dict.fromkeys(
        AWKWARD_IDS, Stage.PROVISIONED)
    assert env.platform_machines() == len(AWKWARD_IDS)

    for rid in AWKWARD_IDS:
        store.request_deletion(rid)
    converge(reconciler, store, Stage.GONE)
    assert env.platform_machines() == 0


#: Legal names a cluster's scaler finds its machines by: tag-safe ones starting with
#: h- (digested on Proxmox before), and values no PVE tag can hold (upper case).
SCALER_LABELS = {LABEL_CLUSTER: "h-lab", LABEL_SET: "h-workers", LABEL_DOMAIN: "Zone-A",
                 "team": "Platform"}


def test_listed_labels_are_the_requests_or_their_digests(env: Environment,
                                                         store: Store) -> None:
    """The scaler compares listed labels with what it expects (its orphan check by
    talprov.cluster): each listed value is the request's, or its digest where the
    platform cannot carry it (listed_label_is); a cluster's and set's name, always
    tag-safe, lists as itself everywhere."""
    provider = env.provider()
    if env.type_name == "baremetal":
        pytest.skip("bare metal lists its inventory's labels, not the request's")
    if env.type_name == "file":
        pytest.skip("the example plugin keeps no labels (lists none)")
    reconciler = reconciler_for(env, store, provider)
    request = request_for(env, "c-labels")
    store.create_request(request.model_copy(update={"labels": {**request.labels,
                                                               **SCALER_LABELS}}))
    converge(reconciler, store, Stage.PROVISIONED)

    (listed,) = provider.list_machines(Owner(env.runtime.installation, "contract"))
    assert (listed.labels.get(LABEL_CLUSTER), listed.labels.get(LABEL_SET)) == ("h-lab",
                                                                              "h-workers")
    for key, value in SCALER_LABELS.items():
        assert listed_label_is(listed.labels.get(key), value), (key, listed.labels)
    store.request_deletion("c-labels")
    converge(reconciler, store, Stage.GONE)


#: Legal label keys of awkward case: upper case in a key's name (Kubernetes allows
#: it, PVE tags are lower case), a DNS prefix with '/', and two keys that differ
#: in case only: each a label of its own.
CASED_LABELS = {"Role": "worker", "role": "other", "topology.kubernetes.io/Zone": "zone-a"}


def test_listed_label_keys_are_the_requests_own(env: Environment, store: Store) -> None:
    """A listing gives each label back under the request's own key: a key with
    upper case is not read back lower-cased, and two keys that differ in case only
    are two labels, neither hiding the other."""
    provider = env.provider()
    if env.type_name == "baremetal":
        pytest.skip("bare metal lists its inventory's labels, not the request's")
    if env.type_name == "file":
        pytest.skip("the example plugin keeps no labels (lists none)")
    reconciler = reconciler_for(env, store, provider)
    request = request_for(env, "c-cased")
    labels = {**request.labels, **CASED_LABELS}
    store.create_request(request.model_copy(update={"labels": labels}))
    converge(reconciler, store, Stage.PROVISIONED)

    (listed,) = provider.list_machines(Owner(env.runtime.installation, "contract"))
    assert listed.labels == labels
    store.request_deletion("c-cased")
    converge(reconciler, store, Stage.GONE)


def test_deprovision_of_a_gone_machine_is_success(env: Environment, store: Store) -> None:
    provider = env.provider()
    reconciler = reconciler_for(env, store, provider)
    store.create_request(request_for(env, "c-gone"))
    converge(reconciler, store, Stage.PROVISIONED)
    store.request_deletion("c-gone")
    converge(reconciler, store, Stage.GONE)
    record = store.get_request("c-gone")
    assert record is not None
    state = provider.state_model.model_validate(record.state)
    ctx: StepContext[Any, Any] = StepContext(
        request=record.request, data=None, state=state,
        owner=Owner(env.runtime.installation, "contract"), runtime=env.runtime,
    )
    for _ in range(10):  # Retry while it double-checks is allowed; an error is not
        if provider.deprovision(ctx) is None:
            break
        env.clock.sleep(5)
    else:
        pytest.fail("deprovision of a gone machine never reported success")
    assert env.platform_machines() == 0


def test_lost_step_state_never_creates_a_second_machine(env: Environment, store: Store) -> None:
    """The crash window: the machine exists but the store never heard of it."""
    provider = env.provider()
    reconciler = reconciler_for(env, store, provider)
    store.create_request(request_for(env, "c-crash"))
    converge(reconciler, store, Stage.PROVISIONED)
    record = store.get_request("c-crash")
    assert record is not None
    store.save_progress(
        "c-crash", expected_version=record.version, stage=Stage.PROVISIONING, step_index=0,
        step_name=None, state={}, error=None, attempts=0, next_attempt_at=None,
        step_started_at=None, infra_id=None, machine_uuid=None, addresses=(), events=[],
    )
    fresh = env.provider()  # a new process: nothing cached
    converge(reconciler_for(env, store, fresh), store, Stage.PROVISIONED)
    assert env.platform_machines() == 1
    after = store.get_request("c-crash")
    assert after is not None
    assert after.infra_id == record.infra_id


def test_other_owners_machines_are_invisible_and_untouched(env: Environment, store: Store
                                                           ) -> None:
    provider = env.provider()
    reconciler = reconciler_for(env, store, provider)
    store.create_request(request_for(env, "c-mine"))
    converge(reconciler, store, Stage.PROVISIONED)
    assert provider.list_machines(Owner("someone-else", "contract")) == []
    assert provider.list_machines(Owner(env.runtime.installation, "other-instance")) == []
    assert env.platform_machines() == 1


def test_provider_data_schema_is_strict_and_exported(env: Environment) -> None:
    provider = env.provider()
    schema = provider.data_model.model_json_schema()
    assert schema["type"] == "object"
    assert schema.get("additionalProperties") is False
    with pytest.raises(ValueError, match="xyzzy"):
        provider.data_model.model_validate({**env.provider_data, "xyzzy": 1})


def test_health_reports_ok(env: Environment) -> None:
    assert env.provider().health().ok
