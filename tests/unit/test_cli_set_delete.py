"""`talprov set delete NAME`: what the API's DELETE of a set does, from the CLI (QA).

The CLI could only scale a set to 0, which leaves it recorded; deleting its
members one by one with `machine delete` left it at its machine_count, and the
next reconcile pass made them again.
"""

from __future__ import annotations

import json

from talprov.sets import SetRepository
from talprov.store.store import Store
from tests.helpers import Home
from tests.providers.fileprov import Cloud
from tests.unit.test_cli_retry_sets_watch import record_request_set


def live_members(home: Home, name: str) -> dict[str, str]:
    store = Store(home.store_url)
    try:
        return {r.request.id: r.stage.value for r in store.list_requests()
                if r.request.labels.get("talprov.request-set") == name}
    finally:
        store.close()


def test_set_delete_wait_removes_the_set_and_no_member_comes_back(home: Home) -> None:
    record_request_set(home, "pool", 2)
    made = home.invoke("reconcile", "--once")
    assert made.exit_code == 0, made.output
    assert live_members(home, "pool") == {"pool-0": "provisioning", "pool-1": "provisioning"}
    cloud = Cloud(home.cloud_path())
    assert len(cloud.machines()) == 2

    deleted = home.invoke("set", "delete", "pool", "--wait", "--yes", "-o", "json")
    assert deleted.exit_code == 0, deleted.output
    assert "request set pool: deleted" in deleted.stderr
    shown = json.loads(deleted.stdout)
    assert (shown["name"], shown["state"], shown["deleted"]) == (
        "pool", "deleted", ["pool-0", "pool-1"])
    assert home.invoke("set", "get", "pool").exit_code == 1
    again = home.invoke("reconcile", "--once")
    assert again.exit_code == 0, again.output
    assert live_members(home, "pool") == {}
    assert cloud.machines() == []
    # Deleting what is gone is a set not found, as `set get` says.
    gone = home.invoke("set", "delete", "pool", "--yes")
    assert gone.exit_code == 1
    assert "request set pool not found" in gone.output


def test_set_delete_marks_the_set_deleting_and_its_members_for_deletion(home: Home) -> None:
    record_request_set(home, "pool", 2)
    deleted = home.invoke("set", "delete", "pool", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert ("request set pool: deleting pool-0, pool-1; `talprov reconcile` (or a "
            "running `talprov serve`) carries it on") in deleted.output
    view = json.loads(home.invoke("set", "get", "pool", "-o", "json").output)
    assert view["deleting"] is True
    assert {m["stage"] for m in view["members"]} == {"deprovisioning"}
    # As the API's DELETE: idempotent, and the set is no longer scaled.
    assert home.invoke("set", "delete", "pool", "--yes").exit_code == 0
    scaled = home.invoke("set", "scale", "pool", "3")
    assert scaled.exit_code != 0
    assert "set pool is being deleted" in scaled.output
    store = Store(home.store_url)
    try:
        found = SetRepository(store).get("pool")
        assert found is not None
        assert found.machine_count == 2
    finally:
        store.close()


def test_set_delete_asks_first_and_a_script_must_pass_yes(home: Home) -> None:
    record_request_set(home, "pool", 2)
    refused = home.invoke("set", "delete", "pool")
    assert refused.exit_code == 2
    assert ("not asking whether to delete all 2 machines of request set pool: stdin "
            "is not a terminal; pass --yes") in refused.output
    assert live_members(home, "pool") == {"pool-0": "pending", "pool-1": "pending"}
    assert "talprov set delete pool --wait --yes" in home.invoke("set", "delete",
                                                                 "--help").output
