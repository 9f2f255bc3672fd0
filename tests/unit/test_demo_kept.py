"""What `talprov demo` leaves behind, and a later demo in the same --dir (QA).

A kept demo (--keep, or a clean-up that ran out of --timeout) is its store and
its emulators, still running. A later demo in that directory used to rewrite
its config and carry on in its store, stranding its machines; and the clean-up
waited its own 300 s whatever --timeout said.
"""

from __future__ import annotations

import importlib
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from talprov.cli.demo_kept import (
    EMULATORS_FILE,
    clean_up_command,
    exports_for,
    kept_demo,
    record_emulators,
    refusal,
    wait_exited,
)
from talprov.sets import RequestSet, SetRepository, reconcile_set, set_fingerprint
from talprov.store import Store
from tests.unit import test_demo as runs

# talprov.cli's attribute `demo` is the command; the module is patched.
demo_command = importlib.import_module("talprov.cli.demo")
SMALL = ("--platforms", "aws", "--control-planes", "1", "--workers", "0")
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def recorded_pids(workdir: Path) -> list[int]:
    import json

    return [e["pid"] for e in json.loads((workdir / EMULATORS_FILE).read_text())["emulators"]]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def kill_left_over() -> Iterator[list[int]]:
    """Pids to kill after the test, should it fail before its clean-up command ran."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def run_clean_up(command: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the printed clean-up line as a reader would, talprov on the PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TALPROV_"))}
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def line_after(output: str, heading: str) -> str:
    """The line after the one ending with ``heading``."""
    lines = output.splitlines()
    [at] = [n for n, line in enumerate(lines) if line.endswith(heading)]
    return lines[at + 1].strip()


def test_a_dir_holding_a_kept_demo_is_refused_until_cleaned_up(
        tmp_path: Path, kill_left_over: list[int]) -> None:
    workdir = tmp_path / "kept"
    code, output = runs.run_demo(tmp_path, *SMALL, "--keep", "--dir", str(workdir))
    assert code == 0, output
    pids = recorded_pids(workdir)
    kill_left_over.extend(pids)
    config = (workdir / "talprov.yaml").read_bytes()

    code, output = runs.run_demo(tmp_path, *SMALL, "--dir", str(workdir))
    assert code == 2, output
    assert (f"talprov: error: --dir {workdir} holds an earlier demo that was not cleaned "
            "up: its store records cluster demo and 1 machine request, and its emulators "
            f"still run (pids {' '.join(map(str, pids))}); a new demo there would strand "
            "its machines.") in output
    assert "starting" not in output  # nothing started, nothing written
    assert (workdir / "talprov.yaml").read_bytes() == config
    assert all(alive(pid) for pid in pids)
    assert recorded_pids(workdir) == pids

    command = line_after(output, "Clean it up first (or pick another --dir):")
    assert f"talprov destroy demo --wait --yes && kill {' '.join(map(str, pids))} && " in command
    cleaned = run_clean_up(command, tmp_path)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    # The line waits for its emulators to exit: the demo run right after it is
    # accepted (it used to say "its emulators still run" while they exited).
    assert [pid for pid in pids if alive(pid)] == []
    assert runs.processes_mentioning(tmp_path) == []
    assert kept_demo(workdir).empty

    code, output = runs.run_demo(tmp_path, *SMALL, "--dir", str(workdir))
    assert code == 0, output
    assert "demo finished: machines created, checked and destroyed." in output
    assert not (workdir / EMULATORS_FILE).exists()
    assert kept_demo(workdir).empty
    assert runs.processes_mentioning(tmp_path) == []


def test_the_clean_up_line_deletes_a_request_set_and_its_members_stay_gone(
        tmp_path: Path, kill_left_over: list[int]) -> None:
    """QA: the line deleted a set's members one by one with `machine delete`; the
    set stayed recorded at its size and the next reconcile pass (a new demo's)
    made them again."""
    workdir = tmp_path / "kept"
    code, output = runs.run_demo(tmp_path, *SMALL, "--keep", "--dir", str(workdir))
    assert code == 0, output
    kill_left_over.extend(recorded_pids(workdir))
    with Store(f"sqlite:///{workdir / 'state.db'}") as store:
        [demo_request] = store.list_requests()
        template = demo_request.request.model_copy(update={"id": "unused", "labels": {}})
        sets = SetRepository(store)
        made = reconcile_set(sets, sets.put(RequestSet(
            "pool", template, 2, False, set_fingerprint(template, 2), T0, T0)))
        assert made.created == ("pool-0", "pool-1")

    code, output = runs.run_demo(tmp_path, *SMALL, "--dir", str(workdir))
    assert code == 2, output
    command = line_after(output, "Clean it up first (or pick another --dir):")
    assert "talprov set delete pool --wait --yes && " in command
    assert "machine delete pool-" not in command
    cleaned = run_clean_up(command, tmp_path)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert kept_demo(workdir).empty

    # A reconcile pass (the next demo's, or anyone's) makes no member again.
    config = f"export TALPROV_CONFIG={workdir / 'talprov.yaml'} && "
    reconciled = run_clean_up(config + "talprov reconcile --once", tmp_path)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    with Store(f"sqlite:///{workdir / 'state.db'}") as store:
        assert SetRepository(store).all() == []
        assert [r.request.id for r in store.list_requests()] == []
    assert kept_demo(workdir).empty


def test_a_clean_up_that_runs_out_of_timeout_says_what_is_left_and_how_to_finish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill_left_over: list[int]) -> None:
    """The wait for the destruction is given --timeout (it used to wait 300 s
    whatever --timeout said); when it runs out, nothing is stopped under the
    machines: what is left is listed with the line that finishes the clean-up."""
    waits: list[float] = []

    def runs_out(_app: object, _scaler: object, name: str, timeout: float) -> bool:
        assert name == "demo"
        waits.append(timeout)
        return False  # the deadline passed with every machine still there

    monkeypatch.setattr(demo_command, "wait_destroyed", runs_out)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "x")  # the demo sets them: put back after the test
    workdir = tmp_path / "demo"
    from talprov.cli import cli

    result = CliRunner().invoke(cli, ["demo", *SMALL, "--dir", str(workdir),
                                      "--timeout", "45"])
    output = result.output  # stdout and stderr, as a terminal shows them
    pids = recorded_pids(workdir) if (workdir / EMULATORS_FILE).exists() else []
    kill_left_over.extend(pids)
    assert waits == [45.0]
    assert result.exit_code == 1, output
    assert f"the clean-up ran out of --timeout (45s); left in {workdir}:" in output
    with Store(f"sqlite:///{workdir / 'state.db'}") as store:
        left = store.list_requests()
    assert len(left) == 1
    for record in left:
        assert (f"  {record.request.id} (aws-demo, {record.infra_id}, "
                f"{record.stage.value})") in output.splitlines()
    assert ("talprov: error: the demo's clean-up ran out of --timeout (45s) with "
            "1 machine request left (above)") in output
    assert len(pids) == 2  # moto and the factory
    assert all(alive(pid) for pid in pids)

    command = line_after(output, "to finish the clean-up, in a shell:")
    cleaned = run_clean_up(command, tmp_path)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert [pid for pid in pids if alive(pid)] == []
    assert kept_demo(workdir).empty


def test_records_whose_emulators_are_gone_are_named_with_the_file_to_remove(
        tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        store.migrate()
        store.put_cluster("demo", {"kind": "Cluster"})
    dead = subprocess.Popen(["true"])
    dead.wait()
    record_emulators(tmp_path, [dead.pid], ["aws"])
    kept = kept_demo(tmp_path)
    assert (kept.clusters, kept.requests, kept.running) == (["demo"], 0, [])
    assert refusal(tmp_path, kept) == (
        f"--dir {tmp_path} holds an earlier demo that was not cleaned up: its store "
        "records cluster demo; none of its emulators runs any more, and its machines "
        f"went with them: remove {tmp_path / 'state.db'} (those records) to use the "
        "directory again, or pick another --dir")
    (tmp_path / EMULATORS_FILE).unlink()
    # No record of emulators: an older talprov's demo, or a store that is no
    # demo's at all (a user's own): never to be removed on a guess.
    assert refusal(tmp_path, kept_demo(tmp_path)) == (
        f"--dir {tmp_path} holds a store, {tmp_path / 'state.db'}, that records cluster "
        "demo but no emulators.json: it is not a demo's of this talprov (an older "
        "talprov's demo, or no demo at all), and the demo will not use it. Pick another "
        "--dir; or, if it is an old demo's, stop the emulators its --keep printed and "
        f"remove {tmp_path / 'state.db'}")
    (tmp_path / "state.db").write_text("not a database")
    with pytest.raises(ValueError, match=r"state.db: cannot read: file is not a database"):
        kept_demo(tmp_path)
    assert (tmp_path / "state.db").read_text() == "not a database"  # never written
    (tmp_path / "state.db").unlink()
    assert kept_demo(tmp_path).empty


def test_emulators_still_running_are_named_even_with_nothing_recorded(tmp_path: Path) -> None:
    """A demo killed before it could stop its emulators (they are recorded as
    each starts): the next one names them, the store being empty."""
    emulator = subprocess.Popen(["sleep", "60"])
    try:
        record_emulators(tmp_path, [emulator.pid], ["proxmox"])
        kept = kept_demo(tmp_path)
        assert (kept.clusters, kept.requests, kept.running, kept.aws) == (
            [], 0, [emulator.pid], False)
        assert refusal(tmp_path, kept) == (
            f"--dir {tmp_path} holds an earlier demo that was not cleaned up: its "
            f"emulators still run (pids {emulator.pid}); a new demo there would strand "
            f"them. Clean it up first (or pick another --dir):\n  kill {emulator.pid} && "
            f"{wait_exited([emulator.pid])}")
        # Run, the line returns once the emulator has exited (here a zombie, this
        # process its parent: exited too).
        command = refusal(tmp_path, kept).splitlines()[-1].strip()
        cleaned = run_clean_up(command, tmp_path)
        assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
        assert not alive(emulator.pid)
        assert kept_demo(tmp_path).empty
        emulator.wait()
        emulator = subprocess.Popen(["sleep", "60"])
        record_emulators(tmp_path, [emulator.pid], ["proxmox"])
        # The same pid with another start time is another process: not taken for it.
        record = (tmp_path / EMULATORS_FILE).read_text()
        (tmp_path / EMULATORS_FILE).write_text(record.replace('"started": "',
                                                              '"started": "1'))
        assert kept_demo(tmp_path).empty
    finally:
        emulator.kill()
        emulator.wait()


def test_the_clean_up_line_removes_what_a_user_added_before_the_emulators_go(
        tmp_path: Path) -> None:
    """README invites applying one's own cluster and `machine create` in a kept
    demo: the line used to destroy only `demo`, then kill the emulators under
    the rest, and the next demo was refused again ("remove state.db")."""
    from pydantic import SecretStr

    from talprov.providers.labels import LABEL_CLUSTER
    from talprov.providers.types import MachineRequest, Stage

    with Store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        store.migrate()
        for name in ("demo", "web"):
            store.put_cluster(name, {"kind": "Cluster"})

        def request(request_id: str, labels: dict[str, str]) -> None:
            store.create_request(MachineRequest(
                id=request_id, provider="aws-demo", talos_version="v1.13.9",
                machine_config=SecretStr("machine: {}"), labels=labels))

        request("demo-cp-1", {LABEL_CLUSTER: "demo"})
        request("web-w-1", {LABEL_CLUSTER: "web"})
        request("lone-1", {})
        request("orphan-1", {LABEL_CLUSTER: "forgotten"})  # no cluster destroys it
        request("gone-1", {})
        # A request set's members go with their set (deleted one by one, the set
        # made them again); a set without members yet is still recorded.
        template = MachineRequest(id="unused", provider="aws-demo", talos_version="v1.13.9",
                                  machine_config=SecretStr("machine: {}"))
        sets = SetRepository(store)
        reconcile_set(sets, sets.put(RequestSet("pool", template, 2, False,
                                                set_fingerprint(template, 2), T0, T0)))
        sets.put(RequestSet("idle", template, 1, False, set_fingerprint(template, 1), T0, T0))
        record = store.get_request("gone-1")
        assert record is not None
        store.save_progress(
            "gone-1", expected_version=record.version, stage=Stage.GONE, step_index=0,
            step_name=None, state={}, error=None, attempts=0, next_attempt_at=None,
            step_started_at=None, infra_id=None, machine_uuid=None, addresses=(), events=())
    emulator = subprocess.Popen(["sleep", "60"])
    try:
        record_emulators(tmp_path, [emulator.pid], ["aws"])
        kept = kept_demo(tmp_path)
        assert (kept.clusters, kept.sets, kept.requests, kept.lone) == (
            ["demo", "web"], ["idle", "pool"], 6, ["lone-1", "orphan-1"])
        assert ("its store records cluster demo, web and request set idle, pool and 6 "
                "machine requests") in refusal(tmp_path, kept)
        command = refusal(tmp_path, kept).splitlines()[-1].strip()
        steps = command.split(" && ")
        assert steps[2:8] == [
            "talprov destroy demo --wait --yes", "talprov destroy web --wait --yes",
            "talprov set delete idle --wait --yes", "talprov set delete pool --wait --yes",
            "talprov machine delete lone-1 --wait", "talprov machine delete orphan-1 --wait"]
        assert steps[8].startswith(f"kill {emulator.pid}")
    finally:
        emulator.kill()
        emulator.wait()


def test_a_kept_demo_is_named_before_a_file_it_did_not_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README's cluster.yaml, written in a kept demo, replaced the demo's: the
    next demo said only that cluster.yaml was not its, hiding the emulators
    still running and the line that cleans them up."""
    from talprov.cli import cli

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "x")  # put back after the test, should it start
    (tmp_path / "cluster.yaml").write_text("kind: Cluster\nname: web\n")
    emulator = subprocess.Popen(["sleep", "60"])
    try:
        record_emulators(tmp_path, [emulator.pid], ["aws"])
        result = CliRunner().invoke(cli, ["demo", *SMALL, "--dir", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert (f"holds an earlier demo that was not cleaned up: its emulators still run "
                f"(pids {emulator.pid})") in result.output
        assert "Clean it up first" in result.output
    finally:
        emulator.kill()
        emulator.wait()


def test_a_demo_whose_wait_runs_out_says_so_and_what_had_not_converged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`demo --timeout 0.3` ended with only "the demo did not converge as
    expected": the wait it gave up and the sets left unconverged were unsaid."""
    waits: list[float] = []

    def runs_out(_app: object, name: str, timeout: float) -> bool:
        assert name == "demo"
        waits.append(timeout)
        return False  # the deadline passed before a single machine was asked for

    monkeypatch.setattr(demo_command, "converge", runs_out)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "x")  # the demo sets them: put back after the test
    from talprov.cli import cli

    workdir = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", *SMALL, "--dir", str(workdir),
                                      "--timeout", "0.3"])
    assert waits == [0.3]
    assert result.exit_code == 1, result.output
    assert ("talprov: error: the demo's wait for its machines ran out of --timeout "
            "(0.3s) before cluster demo converged: control-planes 0/1  workers 0/0"
            ) in result.output
    assert "did not converge as expected" not in result.output
    assert runs.processes_mentioning(tmp_path) == []


@pytest.fixture
def no_extra_emulators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither fakepve nor vcsim here: the demo skips both, one line each."""
    from talprov import demo_platforms

    monkeypatch.setattr(demo_platforms, "fakepve_command", lambda: None)
    real_vcsim_binary = demo_platforms.vcsim_binary
    monkeypatch.setattr(demo_platforms, "vcsim_binary",
                        lambda: real_vcsim_binary({}, checkout=tmp_path / "no-checkout"))


@pytest.mark.usefixtures("no_extra_emulators")
def test_a_refused_dir_is_said_before_any_skipped_platform(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QA: `talprov demo --dir DIR` printed "proxmox: skipped: ..." then refused
    DIR: a refusal comes before any progress line."""
    from talprov.cli import cli

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "x")  # put back after the test, should it start
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "talprov.yaml").write_text("store: sqlite:///mine.db\n")
    result = CliRunner().invoke(cli, ["demo", "--dir", str(foreign)])
    assert result.exit_code == 2, result.output
    assert result.output == (f"talprov: error: {foreign / 'talprov.yaml'} exists and was not "
                             "written by the demo; pick another --dir or move the file\n")
    emulator = subprocess.Popen(["sleep", "60"])
    try:
        record_emulators(tmp_path, [emulator.pid], ["aws"])
        result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("talprov: error: --dir "), result.output
        assert "skipped" not in result.output
    finally:
        emulator.kill()
        emulator.wait()


@pytest.mark.usefixtures("no_extra_emulators")
def test_skipped_platforms_are_said_once_the_dir_is_accepted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The skipped lines still come, first of the progress: here the Image
    Factory stand-in, the first thing started, fails to start."""
    from talprov.cli import cli
    from talprov.cli.app import EXIT_FAILED, fail

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "x")

    def no_factory(workdir: Path) -> None:
        fail("cannot start the Image Factory stand-in: test", EXIT_FAILED)

    monkeypatch.setattr(demo_command, "_start_factory", no_factory)
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        "proxmox: skipped: fakepve is not installed (pip install fakepve)",
        "vmware: skipped: no vcsim binary (set TALPROV_VCSIM, or run "
        "tests/emulators/vcsim/build.sh in a talprov checkout)",
        "talprov: error: cannot start the Image Factory stand-in: test",
    ]


@pytest.mark.parametrize(("record", "said"), [
    (b'{"platforms": ["aws"], "emul', "is not valid JSON (Unterminated string starting "
                                      "at: line 1 column 24 (char 23)): the demo's record "
                                      "of its emulators is unreadable"),
    (b"\xff\xfe\x00", "is not valid JSON ("),
    (b"[]", "is valid JSON but not a demo's record of its emulators (their pids and "
            "platforms)"),
])
def test_a_corrupt_record_of_emulators_is_named_with_what_to_do(
        tmp_path: Path, record: bytes, said: str) -> None:
    """QA: a truncated emulators.json (a demo killed while writing it) gave
    "emulators.json: cannot read: Unterminated string ...": neither that the
    file is no JSON nor what to do."""
    from talprov.cli import cli

    (tmp_path / EMULATORS_FILE).write_bytes(record)
    result = CliRunner().invoke(cli, ["demo", *SMALL, "--dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    path = tmp_path / EMULATORS_FILE
    assert result.output.startswith(f"talprov: error: {path} {said}"), result.output
    assert result.output.endswith(
        "; stop the emulators the demo there left running, if any (its --keep printed "
        f"their pids), then remove {path} to use the directory again, or pick another "
        "--dir\n"), result.output
    assert "Traceback" not in result.output
    assert path.read_bytes() == record  # never removed on a guess


def test_the_clean_up_line_quotes_a_directory_with_a_space() -> None:
    # Review: `cd /tmp/my demo && ...` stopped at cd, and nothing was cleaned up.
    workdir = Path("/tmp/my demo")
    line = clean_up_command(workdir, exports_for(workdir, aws=False), [],
                            clusters=["demo"], lone=[], sets=[])

    words = shlex.split(line)

    assert words[:5] == ["cd", "/tmp/my demo", "&&", "export",
                         "TALPROV_CONFIG=/tmp/my demo/talprov.yaml"]
