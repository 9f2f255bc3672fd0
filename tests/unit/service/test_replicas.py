"""Two ``talprov serve`` replicas on one PostgreSQL store; one is killed with SIGKILL."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from talprov.store.store import Store
from tests.helpers import SEEN_OUTPUT, Home
from tests.providers.fileprov import Cloud
from tests.unit.service.conftest import READ, TOKENS, WRITE, request_body
from tests.unit.service.serving import ServeProcess, wait_until
from tests.unit.service.test_metrics_and_forget import samples

COUNT = 50
def step_calls(client: httpx.Client) -> int:
    values = samples(client.get("/metrics", headers=READ).text)
    return int(sum(n for (name, _labels), n in values.items()
                   if name == "talprov_step_duration_seconds_count"))


def stages(client: httpx.Client) -> Counter[str]:
    items = client.get("/v1/machine-requests", headers=READ).json()["items"]
    return Counter(i["stage"] for i in items)


@pytest.mark.slow
def test_kill_9_of_one_replica_loses_and_duplicates_nothing(
    home: Home, postgres_url: str
) -> None:
    # Machines need several listings to come up, so the work is still in flight
    # when a replica dies.
    home.providers["fake"].update(boot_listings=6, concurrency=4)
    home.write_config(store=postgres_url, service={
        "tokens": TOKENS, "reconcile_interval": 0.1, "lease_ttl": 2,
    })
    alpha = ServeProcess(home.env(), home.root, ["--worker-id", "replica-alpha"])
    beta = ServeProcess(home.env(), home.root, ["--worker-id", "replica-beta"])
    killed = False
    try:
        with (httpx.Client(base_url=alpha.url, timeout=30) as a,
              httpx.Client(base_url=beta.url, timeout=30) as b):
            for n in range(COUNT):
                # Half the creations through each replica: either API serves all.
                client = a if n % 2 else b
                response = client.post("/v1/machine-requests", json=request_body(f"r-{n:02d}"),
                                       headers=WRITE)
                assert response.status_code == 201, response.text
            wait_until(lambda: step_calls(b) > 0 and step_calls(a) > 0, 60,
                       "both replicas to work")
            before = stages(a)
            assert before["provisioned"] < COUNT, before
            beta_steps = step_calls(b)
            beta.kill()
            killed = True
            store = Store(postgres_url)
            orphaned = [f"r-{n:02d}" for n in range(COUNT)
                        if (store.lease_holder(f"r-{n:02d}") or ("",))[0] == "replica-beta"]
            store.close()
            print(f"killed beta after {beta_steps} steps, at {dict(before)}; "
                  f"its leases left behind: {len(orphaned)}")
            wait_until(lambda: stages(a)["provisioned"] == COUNT, 90,
                       "the survivor to finish every request")
            provisioned_events = {}
            for n in range(COUNT):
                events = a.get(f"/v1/machine-requests/r-{n:02d}/events", headers=READ).json()
                SEEN_OUTPUT.append(str(events))
                provisioned_events[n] = sum(
                    e["message"].startswith("provisioned:") for e in events)
    finally:
        if not killed:
            beta.kill()
        assert alpha.terminate() == 0, alpha.output()
    assert beta_steps > 0
    assert before["provisioned"] < COUNT
    assert set(provisioned_events.values()) == {1}
    machines = Cloud(home.cloud_path()).machines()
    per_request = Counter(m["request_id"] for m in machines)
    assert len(per_request) == COUNT
    assert max(per_request.values()) == 1, "a request got two machines"
