"""-o json|yaml on every command that changes something, with the keys scripts
already read elsewhere (QA: `set scale -o json` was "No such option '-o'";
`machine list` lacked keys `machine get` has; `providers --health` gave only
free text; `apply --wait -o json` had other keys than `apply -o json`)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from talprov.store.store import Store
from tests.helpers import Home
from tests.unit.test_cli_retry_sets_watch import _fail, record_request_set
from tests.unit.test_cluster_apply import write_spec
from tests.unit.test_config_checked_early import PVE


def _json(home: Home, *args: str, code: int = 0) -> Any:
    result = home.invoke(*args, "-o", "json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_set_scale_prints_the_set_and_its_changed_members(home: Home) -> None:
    record_request_set(home, "pool", 2)
    grown = _json(home, "set", "scale", "pool", "3")
    assert (grown["name"], grown["machine_count"]) == ("pool", 3)
    assert (grown["created"], grown["deleted"]) == (["pool-2"], [])
    assert [m["id"] for m in grown["members"]] == ["pool-0", "pool-1", "pool-2"]
    shrunk = yaml.safe_load(home.invoke("set", "scale", "pool", "1", "-o", "yaml").stdout)
    assert shrunk["machine_count"] == 1
    assert (shrunk["created"], len(shrunk["deleted"])) == ([], 2)


def test_machine_delete_and_retry_print_the_request_as_get_does(home: Home) -> None:
    request = home.write_request("r1")
    home.invoke("machine", "create", "-f", str(request))
    home.invoke("reconcile", "--once")
    store = Store(home.store_url)
    try:
        _fail(store, "r1")
    finally:
        store.close()
    retried = _json(home, "machine", "retry", "r1")
    got = _json(home, "machine", "get", "r1")
    assert retried["stage"] == "pending"
    assert set(retried) == set(got) - {"events"}
    deleted = _json(home, "machine", "delete", "r1")
    assert (deleted["id"], deleted["stage"]) == ("r1", "deprovisioning")
    waited = _json(home, "machine", "delete", "r1", "--wait", "--timeout", "60")
    assert waited["stage"] == "gone"


def test_machine_list_has_every_key_of_machine_get(home: Home) -> None:
    request = home.write_request("r1")
    home.invoke("machine", "create", "-f", str(request))
    listed = _json(home, "machine", "list")
    got = _json(home, "machine", "get", "r1")
    assert set(listed[0]) == set(got) - {"events"}
    assert listed[0]["config_sha256"] == got["config_sha256"] is not None
    assert listed[0]["join"] is False


def test_destroy_prints_the_cluster_and_the_requests_it_deletes(home: Home) -> None:
    spec = write_spec(home.root, workers=1, control_planes=1)
    home.invoke("apply", "-f", str(spec))
    destroyed = _json(home, "destroy", "demo", "--yes", "--wait", "--timeout", "120")
    assert destroyed["state"] == "destroyed"
    assert destroyed["cluster"] == "demo"
    assert len(destroyed["requests"]) == 2


def test_providers_health_rows_say_ok_and_error(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PVE_TOKEN_UNSET", raising=False)
    home.providers["pve"] = {**PVE, "token_secret": "${env:PVE_TOKEN_UNSET}"}
    home.write_config()
    rows = {row["name"]: row for row in _json(home, "providers", "--health", code=1)
            if row["kind"] == "instance"}
    assert (rows["fake"]["ok"], rows["fake"]["error"]) == (True, None)
    assert rows["pve"]["ok"] is False
    assert "PVE_TOKEN_UNSET" in rows["pve"]["error"]
    assert not rows["pve"]["error"].startswith("unusable")
    plain = _json(home, "providers")
    assert all("ok" not in row for row in plain)  # only --health asks


def test_apply_wait_prints_the_keys_of_apply(home: Home) -> None:
    spec = write_spec(home.root, workers=1, control_planes=1)
    waited = _json(home, "apply", "-f", str(spec), "--wait", "--timeout", "120")
    again = _json(home, "apply", "-f", str(spec))
    assert set(waited) == set(again) | {"converged"}
    assert waited["converged"] is True
    assert sorted(a["action"] for a in waited["actions"]) == ["create", "create"]
    assert all(s["provisioned"] == s["desired"] == 1 for s in waited["sets"])
