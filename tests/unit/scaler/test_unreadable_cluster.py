"""A cluster recorded with another TALPROV_STORE_KEY: set aside by the run loop with
one warning (the other clusters go on), skipped by the autoscaler's group listing,
named by ``talprov status``, sealed anew by applying its spec again, and destroyed
without its secrets."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from talprov.autoscaler.groups import NodeGroups
from talprov.providers.protocol import Runtime
from talprov.reconcile.reconciler import ProviderHandle
from talprov.runloop import RunLoop
from talprov.scaler.apply import Scaler
from talprov.scaler.clusterstate import UnreadableCluster
from talprov.scaler.spec import load_spec_file
from talprov.store.store import Store
from talprov.testing import FakeClock
from tests.helpers import Home
from tests.unit.service.conftest import READ_TOKEN, open_api
from tests.unit.service.test_ui import sign_in
from tests.unit.test_cluster_apply import write_spec
from tests.unit.test_runloop import PollingProvider

OTHER_KEY = "the key of another installation, 32 bytes"
OUR_KEY = "this installation's own key, 32 bytes or more"


def two_clusters(tmp_path: Path) -> tuple[str, Path]:
    """Cluster ``demo`` recorded under another key, ``other`` under ours; the store's URL
    and the spec file of ``demo``."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache")
    elsewhere = Store(url, key=OTHER_KEY)
    elsewhere.migrate()
    spec_path = write_spec(tmp_path, workers=1, control_planes=1)
    Scaler(elsewhere, {}, runtime).record(load_spec_file(spec_path))
    ours = Store(url, key=OUR_KEY)
    other = load_spec_file(spec_path).model_copy(update={"name": "other"})
    Scaler(ours, {}, runtime).record(other)
    return url, spec_path


def applied_under_another_key(home: Home, monkeypatch: pytest.MonkeyPatch, *,
                              workers: int, control_planes: int) -> Path:
    """Cluster ``demo`` applied under :data:`OTHER_KEY`, then :data:`OUR_KEY` set;
    its spec file."""
    monkeypatch.setenv("TALPROV_STORE_KEY", OTHER_KEY)
    spec = write_spec(home.root, workers=workers, control_planes=control_planes)
    assert home.invoke("apply", "-f", str(spec)).exit_code == 0
    monkeypatch.setenv("TALPROV_STORE_KEY", OUR_KEY)
    return spec


def cluster_page(home: Home) -> str:
    """The UI page of cluster ``demo``, as a reader sees it."""
    texts: list[str] = []
    for api in open_api(home, workers=False):  # runs to its end: the service closes
        sign_in(api.client, READ_TOKEN)
        page = api.client.get("/ui/clusters/demo")
        assert page.status_code == 200, page.text
        texts.append(page.text)
    [text] = texts
    return text


def test_the_run_loop_sets_an_unreadable_cluster_aside_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = two_clusters(tmp_path)
    clock = FakeClock()
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache", clock=clock,
                      sleep=clock.sleep)
    store = Store(url, key=OUR_KEY)
    with RunLoop(store, {"fake": ProviderHandle(PollingProvider())}, runtime) as loop, \
            caplog.at_level(logging.INFO):
        reports = [loop.run_round() for _ in range(3)]
    assert [r.errors for r in reports] == [[], [], []]
    about = [r for r in caplog.records if "demo" in r.getMessage()]
    assert [r.levelno for r in about] == [logging.WARNING], [r.getMessage() for r in about]
    warning = about[0].getMessage()
    assert warning.startswith("cluster demo set aside")
    assert "TALPROV_STORE_KEY differs" in warning
    assert OTHER_KEY not in warning
    assert OUR_KEY not in warning
    # The readable cluster got its passes: its two machines were created.
    made = {r.request.labels.get("talprov.cluster") for r in store.list_requests()}
    assert made == {"other"}
    assert store.get_cluster("demo") is not None  # set aside, not forgotten


def test_the_autoscaler_lists_the_readable_clusters_groups(tmp_path: Path) -> None:
    url, _ = two_clusters(tmp_path)
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache")
    groups = NodeGroups(Scaler(Store(url, key=OUR_KEY), {}, runtime))
    assert {g.cluster for g in groups.groups()} <= {"other"}  # no UnreadableCluster raised


def test_state_names_the_cluster_and_applying_its_spec_again_seals_it_anew(
    tmp_path: Path,
) -> None:
    url, spec_path = two_clusters(tmp_path)
    runtime = Runtime(installation="test", cache_dir=tmp_path / "cache")
    scaler = Scaler(Store(url, key=OUR_KEY), {}, runtime)
    with pytest.raises(UnreadableCluster) as caught:
        scaler.state("demo")
    assert caught.value.cluster == "demo"
    assert str(caught.value).startswith("cluster demo: ")
    assert "apply its spec again" in str(caught.value)
    with pytest.raises(UnreadableCluster):  # the guard is the scaler's, not only the CLI's
        scaler.record(load_spec_file(spec_path))
    scaler.record(load_spec_file(spec_path), reseal=True)
    state = scaler.state("demo")
    assert state is not None
    assert state.spec.sets["workers"].machine_config.get_secret_value()


def test_the_cluster_commands_name_an_unreadable_cluster_and_apply_seals_it_anew(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = applied_under_another_key(home, monkeypatch, workers=1, control_planes=1)

    shown = home.invoke("status", "demo")
    assert shown.exit_code == 1, shown.output
    assert "cluster demo: " in shown.output
    assert "TALPROV_STORE_KEY differs" in shown.output
    assert "apply its spec again" in shown.output
    assert "Traceback" not in shown.output
    assert OTHER_KEY not in shown.output

    # Without --reseal a wrong key in the shell must not overwrite the record.
    for command in ("plan", "apply"):
        refused = home.invoke(command, "-f", str(spec))
        assert refused.exit_code == 1, refused.output
        assert "--reseal" in refused.output
    planned = home.invoke("plan", "-f", str(spec), "--reseal", "-o", "json")
    assert planned.exit_code == 0, planned.output
    applied = home.invoke("apply", "-f", str(spec), "--reseal")
    assert applied.exit_code == 0, applied.output
    # QA: the warning came twice (the question's read and the record's).
    assert applied.output.count("this key cannot read its record") == 1, applied.output
    assert home.invoke("status", "demo").exit_code == 0


def test_the_status_page_shows_an_unreadable_cluster_as_set_aside(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALPROV_STORE_KEY", OTHER_KEY)
    assert home.invoke("apply", "-f", str(write_spec(home.root))).exit_code == 0
    monkeypatch.setenv("TALPROV_STORE_KEY", OUR_KEY)
    page = cluster_page(home)
    assert "set aside: its secrets cannot be read" in page
    assert "TALPROV_STORE_KEY differs" in page
    assert OTHER_KEY not in page
    assert "UnreadableCluster" not in page


def test_an_unreadable_cluster_can_be_destroyed_without_its_secrets(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALPROV_STORE_KEY", OTHER_KEY)
    spec = write_spec(home.root, workers=1, control_planes=1)
    assert home.invoke("apply", "-f", str(spec), "--wait").exit_code == 0
    monkeypatch.setenv("TALPROV_STORE_KEY", OUR_KEY)
    store = Store(home.store_url, key=OUR_KEY)
    sealed = store.get_cluster("demo")
    assert sealed is not None

    marked = home.invoke("destroy", "demo", "--yes")
    assert marked.exit_code == 0, marked.output
    body = store.get_cluster("demo")
    assert body is not None
    assert body["destroying"] is True
    assert body["spec"] == sealed["spec"]  # the sealed secrets are kept as they were

    destroyed = home.invoke("destroy", "demo", "--yes", "--wait", "--timeout", "60")
    assert destroyed.exit_code == 0, destroyed.output
    assert store.get_cluster("demo") is None
    assert [r.stage for r in store.list_requests(labels={"talprov.cluster": "demo"})] == []


def test_status_without_a_name_lists_every_cluster_and_one_it_cannot_read(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # QA: no command listed the recorded clusters; `status` wanted a NAME.
    empty = home.invoke("status", "-o", "json")
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.stdout) == []
    monkeypatch.setenv("TALPROV_STORE_KEY", OTHER_KEY)
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=2,
                                                       control_planes=1))).exit_code == 0
    assert home.invoke("reconcile", "--once").exit_code == 0
    listed = home.invoke("status", "-o", "json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert row["cluster"] == "demo"
    assert row["sets"] == {"control-planes": 1, "workers": 2}
    assert row["requests"] == 3
    assert row["state"] == "recorded"
    monkeypatch.setenv("TALPROV_STORE_KEY", OUR_KEY)
    table = home.invoke("status")
    # QA: it exited 0; `status demo` exits 1 for the very same cluster.
    assert table.exit_code == 1, table.output
    assert "demo" in table.stdout
    assert "unreadable" in table.stdout
    assert table.stderr.startswith("talprov: error: cluster demo: ")
    assert "--reseal" in table.stderr
    assert OTHER_KEY not in table.output
    scripted = home.invoke("status", "-o", "json")
    assert scripted.exit_code == 1
    assert [row["state"] for row in json.loads(scripted.stdout)] == ["unreadable"]


def test_status_watch_keeps_showing_the_clusters_when_one_is_unreadable(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review: the exit 1 for an unreadable cluster ended `status --watch` at its
    # first redraw, throwing the table of every other cluster away.
    monkeypatch.setenv("TALPROV_STORE_KEY", OTHER_KEY)
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                   control_planes=1))).exit_code == 0
    monkeypatch.setenv("TALPROV_STORE_KEY", OUR_KEY)
    redraws: list[float] = []

    def pause(seconds: float) -> None:
        redraws.append(seconds)
        if len(redraws) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("talprov.cli.output.time.sleep", pause)
    watched = home.invoke("status", "--watch", "1", "-o", "json")
    assert redraws == [1.0, 1.0]
    assert watched.exit_code == 130, watched.output
    [line] = watched.stdout.splitlines()  # JSON Lines: printed once, unchanged after
    assert [row["state"] for row in json.loads(line)] == ["unreadable"]
    assert watched.stderr.count("cluster demo: recorded under another") == 1
    assert OTHER_KEY not in watched.output


def test_after_reseal_the_old_keys_requests_are_unreadable_not_provisioning(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # QA: after `apply --reseal`, status and plan counted the requests sealed with the
    # old key as "provisioning", and the plan took them for members on their way up,
    # although no pass can ever provision them with this key.
    spec = applied_under_another_key(home, monkeypatch, workers=2, control_planes=1)

    planned = home.invoke("plan", "-f", str(spec), "--reseal", "-o", "json")
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    sets = {s["name"]: s for s in plan["sets"]}
    assert [(sets[n]["provisioning"], sets[n]["unreadable"], sets[n]["unhealthy"])
            for n in ("control-planes", "workers")] == [(0, 1, 1), (0, 2, 2)]
    # Each set's unreadable requests are replaced within maxInFlight (1). Review: both
    # workers being unreadable opened the circuit breaker (maxUnhealthy 40%) and
    # nothing of theirs was ever replaced; a reseal is not a health signal.
    assert [(a["action"], a["set"]) for a in plan["actions"]] == [
        ("replace", "control-planes"), ("replace", "workers")]
    assert all("unreadable" in a["reason"] for a in plan["actions"])
    assert sets["workers"]["circuit_breaker_open"] is False
    assert any("TALPROV_STORE_KEY" in note for note in sets["workers"]["notes"])

    assert home.invoke("apply", "-f", str(spec), "--reseal").exit_code == 0
    shown = home.invoke("status", "demo", "-o", "json")
    assert shown.exit_code == 0, shown.output
    workers = {s["name"]: s for s in json.loads(shown.stdout)["sets"]}["workers"]
    # One replacement on its way (maxInFlight 1), one still sealed under the old key.
    assert (workers["provisioned"], workers["provisioning"], workers["unreadable"]) == (0, 1, 1)
    # The list of every cluster agrees with `status demo` (QA: it counted them by
    # stage alone).
    listed = home.invoke("status", "-o", "json")
    assert listed.exit_code == 0, listed.output
    [row] = [r for r in json.loads(listed.stdout) if r["cluster"] == "demo"]
    sets = json.loads(shown.stdout)["sets"]
    assert row["unreadable"] == sum(s["unreadable"] for s in sets) > 0
    assert row["provisioned"] == sum(s["provisioned"] for s in sets)
    table = home.invoke("status", "demo")
    assert "unreadable" in table.output.splitlines()[1], table.output
    # Review: the UI's sets table had no unreadable column.
    page = cluster_page(home)
    assert '<th scope="col">Unreadable</th>' in page
    assert '<td data-label="Unreadable" class="bad">1</td>' in page
