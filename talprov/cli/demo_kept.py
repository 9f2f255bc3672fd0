"""What ``talprov demo`` leaves in its work directory when it does not clean up
(``--keep``, or a clean-up that ran out of ``--timeout``), and the refusal of a
``--dir`` that still holds such a demo.

A kept demo is its store (``state.db``: the cluster and its machine requests)
plus the emulators it left running, whose machines live only inside them. The
emulators are recorded in ``emulators.json`` (pid and start time, so a pid
reused by another process is not taken for one of them). A later demo in the
same directory would rewrite ``talprov.yaml`` to name its own emulators and
carry on in the old store: the old machines could then be neither reached nor
destroyed. So it is refused until the old demo is cleaned up, with the command
that does it.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from talprov.cli.invoked import talprov_line
from talprov.providers import Stage
from talprov.providers.labels import LABEL_CLUSTER, LABEL_REQUEST_SET

#: The emulators a kept demo left running, in its work directory.
EMULATORS_FILE = "emulators.json"
STORE_FILE = "state.db"
#: The throwaway AWS credentials moto accepts: the AWS driver finds none without
#: them, so the commands run on a kept demo need them exported too.
KEPT_AWS_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def exports_for(workdir: Path, *, aws: bool) -> dict[str, str]:
    """What a shell must export to use the demo kept in ``workdir``: its config,
    and the AWS credentials when moto runs (``aws``). Pure."""
    from talprov.demo_platforms.aws import fake_credentials

    exports = {"TALPROV_CONFIG": str(workdir / "talprov.yaml")}
    if aws:
        exports.update({name: fake_credentials()[name] for name in KEPT_AWS_CREDENTIALS})
    return exports


def clean_up_command(workdir: Path, exports: dict[str, str], pids: list[int], *,
                     clusters: list[str], lone: list[str], sets: list[str]) -> str:
    """One shell line that destroys, through talprov, every cluster the kept demo's
    store records (``clusters``: the demo's and any a user applied), deletes every
    request set it records (``sets``) and every live request in none of them
    (``lone``), then stops its emulators (``pids``). A set goes as a whole: its
    members deleted one by one would leave it at its size, and the next reconcile
    pass would make them again. The emulators go last: they hold the machines, and
    the store's records of machines gone with them would refuse the next demo. Pure."""
    kill = f"kill {' '.join(str(pid) for pid in pids)} && {wait_exited(pids)}"
    steps = [*(talprov_line(f"destroy {name} --wait --yes") for name in clusters),
             *(talprov_line(f"set delete {name} --wait --yes") for name in sets),
             *(talprov_line(f"machine delete {request} --wait") for request in lone)]
    if not steps:
        return kill
    # Quoted: a --dir with a space made `cd` fail, and nothing was cleaned up.
    assigned = " ".join(f"{name}={shlex.quote(value)}" for name, value in exports.items())
    line = " && ".join([f"cd {shlex.quote(str(workdir))}", f"export {assigned}", *steps])
    return line + (f" && {kill}" if pids else "")


#: How long the clean-up line waits for the emulators it killed to exit, in
#: tenths of a second (an emulator exits well within it).
EXIT_WAIT_TENTHS = 300


def wait_exited(pids: list[int]) -> str:
    """A shell loop that returns once each of ``pids`` has exited (or is a
    zombie: exited, not yet reaped), or after :data:`EXIT_WAIT_TENTHS`. `kill`
    returns when the signal is sent: without this, a demo run right after the
    clean-up line found the emulators still running and refused the directory.
    Pure."""
    each = " ".join(str(pid) for pid in pids)
    return (f"for p in {each}; do for _ in $(seq {EXIT_WAIT_TENTHS}); do "
            "[ -d /proc/$p ] && ! grep -qs ') Z' /proc/$p/stat || break; sleep 0.1; "
            "done; done")


def _start_time(pid: int) -> str | None:
    """The start time (clock ticks since boot) of process ``pid``, or None when
    it does not run (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    # fields[0] is the state (field 3 of proc(5)); the start time is field 22.
    return None if fields[0] == "Z" else fields[19]


def record_emulators(workdir: Path, pids: list[int], platforms: list[str]) -> None:
    """Write ``emulators.json``: the emulators (``pids``) the demo in ``workdir``
    runs, rewritten as each starts, and its ``platforms``. Idempotent (rewrites
    the file); raises ``OSError`` when it cannot be written."""
    emulators = [{"pid": pid, "started": _start_time(pid)} for pid in pids]
    (workdir / EMULATORS_FILE).write_text(
        json.dumps({"platforms": platforms, "emulators": emulators}, indent=2) + "\n")


@dataclass
class KeptDemo:
    """What an earlier demo left in a work directory."""

    clusters: list[str]
    requests: int
    #: The ids of the live requests in no recorded cluster or request set
    #: (``machine create``'s).
    lone: list[str]
    #: The pids of its emulators still running; None when it recorded none.
    running: list[int] | None
    aws: bool
    #: The request sets its store records (a set without members too: a
    #: reconcile pass makes them).
    sets: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing left: a directory a new demo may use."""
        return (not self.clusters and not self.sets and not self.requests
                and not self.running)


def _recorded(workdir: Path) -> tuple[list[int] | None, bool]:
    """(the recorded emulators still running or None without a record, whether
    the demo ran on aws)."""
    path = workdir / EMULATORS_FILE
    # A demo killed while writing the file (or a hand edit) leaves it unreadable:
    # its emulators are then unknown, and only the user can stop them.
    hint = ("stop the emulators the demo there left running, if any (its --keep printed "
            f"their pids), then remove {path} to use the directory again, or pick another --dir")
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None, True
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        recorded = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or bytes that are no text
        raise ValueError(f"{path} is not valid JSON ({exc}): the demo's record of its "
                         f"emulators is unreadable; {hint}") from exc
    try:
        emulators = [(int(e["pid"]), e["started"]) for e in recorded["emulators"]]
        aws = "aws" in recorded["platforms"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is valid JSON but not a demo's record of its emulators "
                         f"(their pids and platforms); {hint}") from exc
    # A pid whose start time changed is another process now: not the demo's.
    return [pid for pid, started in emulators
            if started is not None and _start_time(pid) == started], aws


def kept_demo(workdir: Path) -> KeptDemo:
    """What an earlier demo left in ``workdir``: the clusters and requests its
    store records, and its recorded emulators still running. Reads only.

    Raises ``ValueError`` (naming the file) when the store or the record cannot be read.
    """
    running, aws = _recorded(workdir)
    held = _store_holds(workdir / STORE_FILE)
    return KeptDemo(held.clusters, held.requests, held.lone, running, aws, held.sets)


@dataclass
class _Held:
    clusters: list[str]
    sets: list[str]
    requests: int
    lone: list[str]


def _store_holds(path: Path) -> _Held:
    """The cluster and request set names, the count of live requests, and the ids
    of the live requests in none of those clusters and sets, recorded in the
    SQLite store at ``path``.

    Opened read-only with sqlite3, not as a :class:`~talprov.store.Store`, which
    would switch the file to WAL: a file that may not be the demo's is never
    written. Raises ``ValueError`` when it is no SQLite database.
    """
    if not path.exists():
        return _Held([], [], 0, [])
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"clusters", "requests"} <= tables:
                return _Held([], [], 0, [])  # created, never migrated: holds nothing
            clusters = [row[0] for row in db.execute("SELECT name FROM clusters ORDER BY name")]
            sets = ([row[0] for row in db.execute("SELECT name FROM request_sets ORDER BY name")]
                    if "request_sets" in tables else [])
            # GONE requests have no machine left: the store keeps them for the record.
            [(requests,)] = db.execute("SELECT count(*) FROM requests WHERE stage != ?",
                                       (Stage.GONE.value,))
            # A request whose cluster label names no recorded cluster is destroyed
            # by no `talprov destroy`: it is deleted on its own, as a lone one. A
            # recorded set's member goes with its set (`talprov set delete`); a
            # member made before sets labelled theirs is left to be a lone one
            # (deleted again once its set is gone: a no-op).
            owners = {(LABEL_CLUSTER, name) for name in clusters}
            owners |= {(LABEL_REQUEST_SET, name) for name in sets}
            owned = {row[0] for row in db.execute(
                "SELECT request_id, key, value FROM request_labels WHERE key IN (?, ?)",
                (LABEL_CLUSTER, LABEL_REQUEST_SET)) if (row[1], row[2]) in owners}
            lone = [row[0] for row in db.execute(
                "SELECT id FROM requests WHERE stage != ? ORDER BY id", (Stage.GONE.value,))
                if row[0] not in owned]
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from exc
    return _Held(clusters, sets, int(requests), lone)


def refusal(workdir: Path, kept: KeptDemo) -> str:
    """Why a new demo may not use ``workdir``, which holds the non-empty ``kept``,
    and the command that cleans it up. Pure."""
    records = []
    if kept.clusters:
        records.append(f"cluster {', '.join(kept.clusters)}")
    if kept.sets:
        records.append(f"request set {', '.join(kept.sets)}")
    if kept.requests:
        records.append(f"{kept.requests} machine request{'s' if kept.requests != 1 else ''}")
    what = f"its store records {' and '.join(records)}" if records else ""
    head = f"--dir {workdir} holds an earlier demo that was not cleaned up"
    if kept.running:
        pids = " ".join(str(pid) for pid in kept.running)
        running = f"its emulators still run (pids {pids})"
        command = clean_up_command(workdir, exports_for(workdir, aws=kept.aws),
                                   kept.running, clusters=kept.clusters, lone=kept.lone,
                                   sets=kept.sets)
        stranded = "its machines" if records else "them"
        return (f"{head}: {', and '.join(filter(None, [what, running]))}; a new demo "
                f"there would strand {stranded}. Clean it up first (or pick another "
                f"--dir):\n  {command}")
    store = workdir / STORE_FILE
    if kept.running is None:
        # Every demo records its emulators before its store exists: this store
        # is an older talprov's demo, or no demo's at all (never to be removed
        # on a guess).
        return (f"--dir {workdir} holds a store, {store}, that {what.removeprefix('its store ')} "
                f"but no {EMULATORS_FILE}: it is not a demo's of this talprov (an older "
                "talprov's demo, or no demo at all), and the demo will not use it. Pick "
                "another --dir; or, if it is an old demo's, stop the emulators its --keep "
                f"printed and remove {store}")
    return (f"{head}: {what}; none of its emulators runs any more, and its machines "
            f"went with them: remove {store} (those records) to use the directory "
            "again, or pick another --dir")
