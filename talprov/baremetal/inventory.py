"""The bare-metal inventory: machines, their BMCs, who has them, how they boot next.

One small SQLite file shared by the provider (inside the reconciler) and the
boot server (``talprov baremetal serve``, possibly another process). Every
change that two parties could race on is one conditional ``UPDATE`` inside a
``BEGIN IMMEDIATE`` transaction, so:

* two requests never get the same machine: allocation sets ``request_id`` only
  ``WHERE request_id IS NULL``, and a request first looks up the machine it
  already holds (a crash between the update and the step's state save loses
  nothing);
* a machine config is handed out once: the config row is cleared in the same
  transaction that checks the single-use token.

The file holds machine configs while they wait to be fetched and BMC password
references: it is created with mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence

from talprov.baremetal.inventory_file import InventoryFile
from talprov.baremetal.records import (
    AuditEntry,
    BmcInfo,
    BootPlan,
    InventoryMachine,
    MachineStatus,
    canonical_uuid,
    check_machine_name,
    normalize_mac,
    uuid_or_none,
)

__all__ = [
    "AuditEntry", "BmcInfo", "BootPlan", "Inventory", "InventoryError", "InventoryMachine",
    "MachineStatus", "normalize_mac", "token_digest",
]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InventoryError(Exception):
    """A change the inventory refuses (unknown machine, duplicate, wrong state)."""


class UnknownMachine(InventoryError):
    """No machine of that name is in the inventory."""


class Inventory(InventoryFile):
    """Machines and their allocation, in one SQLite file. Thread- and process-safe."""

    def machines(self) -> list[InventoryMachine]:
        """Every machine, by name. Read-only."""
        return self._rows()

    def get(self, name: str) -> InventoryMachine | None:
        found = self._rows("name = ?", (name,))
        return found[0] if found else None

    def held_by(self, request_id: str) -> InventoryMachine | None:
        """The machine allocated to ``request_id``, if any."""
        found = self._rows("request_id = ?", (request_id,))
        return found[0] if found else None

    def owned_by(self, owner: str) -> list[InventoryMachine]:
        return self._rows("owner = ?", (owner,))

    def find(self, uuid: str | None, mac: str | None) -> InventoryMachine | None:
        """The machine with this SMBIOS UUID (any case; text that is no UUID finds
        none: :func:`uuid_or_none`), else the one with this MAC."""
        canonical = uuid_or_none(uuid)
        if canonical:
            found = self._rows("uuid = ?", (canonical,))
            if found:
                return found[0]
        if mac:
            wanted = normalize_mac(mac)
            for m in self._rows():
                if wanted in m.macs:
                    return m
        return None

    def audit(self) -> list[AuditEntry]:
        db = self._connect()
        try:
            rows = db.execute("SELECT * FROM audit ORDER BY id").fetchall()
        finally:
            db.close()
        return [AuditEntry(r["at"], r["event"], r["machine"], r["uuid"], r["mac"], r["remote"],
                           r["detail"]) for r in rows]

    def audit_counts(self, events: Sequence[str]) -> dict[str, int]:
        """How many audit entries of each of ``events`` there are (0 for none); one
        query on the event index. Read-only; entries are never deleted, so each
        count only grows."""
        marks = ", ".join("?" for _ in events)
        db = self._connect()
        try:
            rows = db.execute(f"SELECT event, COUNT(*) AS n FROM audit"  # noqa: S608
                              f" WHERE event IN ({marks}) GROUP BY event", tuple(events)
                              ).fetchall()
        finally:
            db.close()
        counts = dict.fromkeys(events, 0)
        counts.update({str(r["event"]): int(r["n"]) for r in rows})
        return counts

    # -- administration -----------------------------------------------------

    def add(
        self, name: str, *, uuid: str | None, macs: Sequence[str], bmc: BmcInfo,
        labels: Mapping[str, str] | None = None, cpus: int | None = None,
        memory_mib: int | None = None, disk_gb: int | None = None,
    ) -> InventoryMachine:
        """Enrol a machine as available (or adopt a discovered one with the same UUID/MAC).

        Raises ``InventoryError`` if the name exists or its UUID/MAC belongs to another
        enrolled machine, ``ValueError`` for a name that breaks the machine name rule,
        a UUID that is not 8-4-4-4-12 hex digits or a malformed MAC. Not idempotent
        for an existing name.
        """
        check_machine_name(name)
        macs_n = sorted({normalize_mac(m) for m in macs})
        uuid_n = canonical_uuid(uuid) if uuid else None
        with self._tx() as db:
            if db.execute("SELECT 1 FROM machines WHERE name = ?", (name,)).fetchone():
                raise InventoryError(f"machine {name!r} already exists")
            # A machine that PXE-booted before it was enrolled: take over its row.
            for row in db.execute("SELECT name, uuid, macs, state FROM machines").fetchall():
                same = (uuid_n and row["uuid"] == uuid_n) or set(json.loads(row["macs"])) & set(
                    macs_n)
                if not same:
                    continue
                if row["state"] != MachineStatus.DISCOVERED:
                    raise InventoryError(f"UUID/MAC already enrolled as {row['name']!r}")
                db.execute("DELETE FROM machines WHERE name = ?", (row["name"],))
            db.execute(
                "INSERT INTO machines (name, uuid, macs, bmc, labels, cpus, memory_mib, disk_gb,"
                " state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, uuid_n, json.dumps(macs_n), json.dumps(bmc.__dict__),
                 json.dumps(dict(labels or {})), cpus, memory_mib, disk_gb,
                 MachineStatus.AVAILABLE, self.clock()),
            )
        machine = self.get(name)
        assert machine is not None
        return machine

    def accept(self, name: str, bmc: BmcInfo | None = None) -> None:
        """Make a discovered machine available, or lift a cordon. Idempotent."""
        with self._tx() as db:
            row = db.execute("SELECT state FROM machines WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UnknownMachine(f"no machine {name!r}")
            db.execute("UPDATE machines SET cordoned = 0, cordon_reason = '', updated_at = ?"
                       " WHERE name = ?", (self.clock(), name))
            if row["state"] == MachineStatus.DISCOVERED:
                db.execute("UPDATE machines SET state = ? WHERE name = ?",
                           (MachineStatus.AVAILABLE, name))
            if bmc is not None:
                db.execute("UPDATE machines SET bmc = ? WHERE name = ?",
                           (json.dumps(bmc.__dict__), name))

    def update_bmc(self, name: str, bmc: BmcInfo) -> None:
        """Replace a machine's BMC details (address, user, password reference) in place.

        Allowed in every state: a held machine keeps its request and the next
        power action uses the new details. Raises ``InventoryError`` for an
        unknown name. Idempotent.
        """
        with self._tx() as db:
            cur = db.execute("UPDATE machines SET bmc = ?, updated_at = ? WHERE name = ?",
                             (json.dumps(bmc.__dict__), self.clock(), name))
            if cur.rowcount == 0:
                raise UnknownMachine(f"no machine {name!r}")

    def cordon(self, name: str, reason: str = "") -> None:
        """Keep a machine from new allocations (a held machine keeps its request);
        ``reason`` (talprov's, shown by ``baremetal list``) replaces any earlier
        one. Idempotent."""
        with self._tx() as db:
            cur = db.execute("UPDATE machines SET cordoned = 1, cordon_reason = ?, updated_at = ?"
                             " WHERE name = ?", (reason, self.clock(), name))
            if cur.rowcount == 0:
                raise UnknownMachine(f"no machine {name!r}")

    def remove(self, name: str) -> None:
        """Forget a machine that no request holds. Raises ``InventoryError`` otherwise
        (``UnknownMachine`` for an unknown name)."""
        with self._tx() as db:
            row = db.execute("SELECT request_id FROM machines WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UnknownMachine(f"no machine {name!r}")
            if row["request_id"] is not None:
                raise InventoryError(f"machine {name!r} is held by request {row['request_id']}")
            db.execute("DELETE FROM machines WHERE name = ?", (name,))

    # -- allocation ---------------------------------------------------------

    def allocate(
        self, request_id: str, owner: str, candidates: Sequence[str],
    ) -> InventoryMachine | None:
        """Give ``request_id`` the first of ``candidates`` still free; None if none is.

        Idempotent: a request that already holds a machine gets that machine back.
        Each attempt is a conditional UPDATE, so two requests racing for one
        machine cannot both win.
        """
        held = self.held_by(request_id)
        if held is not None:
            return held
        for name in candidates:
            with self._tx() as db:
                cur = db.execute(
                    "UPDATE machines SET request_id = ?, owner = ?, state = ?, boot = NULL,"
                    " config = NULL, token_sha256 = NULL, script_fetched_at = NULL,"
                    " kernel_fetched_at = NULL, config_fetched_at = NULL,"
                    " wipe_started_at = NULL, wipe_reported_at = NULL, updated_at = ?"
                    " WHERE name = ? AND request_id IS NULL AND state = ? AND cordoned = 0",
                    (request_id, owner, MachineStatus.ALLOCATED, self.clock(), name,
                     MachineStatus.AVAILABLE),
                )
            if cur.rowcount == 1:
                return self.get(name)
        return None

    def set_install(self, name: str, request_id: str, plan: BootPlan, config: str) -> None:
        """Record what an allocated machine boots and the config it may fetch once.

        Idempotent until the config was fetched; after that it changes nothing.
        """
        with self._tx() as db:
            db.execute(
                "UPDATE machines SET boot = ?, config = ?, updated_at = ?"
                " WHERE name = ? AND request_id = ? AND state = ? AND config_fetched_at IS NULL",
                (plan.to_json(), config, self.clock(), name, request_id,
                 MachineStatus.ALLOCATED),
            )

    def mark_provisioned(self, name: str, request_id: str) -> None:
        """Installed: keep the asset URLs (the wipe boots the same Talos), drop the
        command line, which may hold an Omni join token. Idempotent."""
        with self._tx() as db:
            row = db.execute("SELECT boot FROM machines WHERE name = ? AND request_id = ?"
                             " AND state = ?", (name, request_id, MachineStatus.ALLOCATED)
                             ).fetchone()
            if row is None:
                return
            boot = None
            if row["boot"]:
                plan = BootPlan.from_json(row["boot"])
                boot = BootPlan(plan.kernel_url, plan.initramfs_url, (), False).to_json()
            db.execute("UPDATE machines SET state = ?, boot = ?, updated_at = ? WHERE name = ?",
                       (MachineStatus.PROVISIONED, boot, self.clock(), name))

    def start_wipe(self, name: str, request_id: str, plan: BootPlan) -> None:
        """Switch a held machine to the wipe image; clears any unfetched config. Idempotent."""
        with self._tx() as db:
            db.execute(
                "UPDATE machines SET state = ?, boot = ?, config = NULL, token_sha256 = NULL,"
                " script_fetched_at = NULL, kernel_fetched_at = NULL,"
                " wipe_started_at = COALESCE(wipe_started_at, ?), updated_at = ?"
                " WHERE name = ? AND request_id = ? AND state != ?",
                (MachineStatus.WIPING, plan.to_json(), self.clock(), self.clock(), name,
                 request_id, MachineStatus.WIPING),
            )

    def release(self, name: str, request_id: str) -> None:
        """Give a machine back: available, no request, nothing to boot. Idempotent."""
        with self._tx() as db:
            db.execute(
                "UPDATE machines SET state = ?, request_id = NULL, owner = NULL, boot = NULL,"
                " config = NULL, token_sha256 = NULL, updated_at = ?"
                " WHERE name = ? AND request_id = ?",
                (MachineStatus.AVAILABLE, self.clock(), name, request_id),
            )

    def release_unwiped(self, name: str, request_id: str, *, detail: str) -> None:
        """Give back a machine whose request is gone without a deprovision (forgotten):
        free, cordoned (its disk was not wiped and may still hold that cluster's
        Talos and secrets) and audited as ``released``. Raises ``UnknownMachine``
        for an unknown name, ``InventoryError`` when ``request_id`` does not hold it.
        Not idempotent by design: a second call finds the machine free and refuses.
        """
        with self._tx() as db:
            row = db.execute("SELECT request_id FROM machines WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UnknownMachine(f"no machine {name!r}")
            if row["request_id"] != request_id:
                raise InventoryError(f"machine {name!r} is not held by request {request_id}")
            db.execute(
                "UPDATE machines SET state = ?, request_id = NULL, owner = NULL, boot = NULL,"
                " config = NULL, token_sha256 = NULL, cordoned = 1, cordon_reason = ?,"
                " updated_at = ? WHERE name = ?",
                (MachineStatus.AVAILABLE, f"{detail}; not wiped", self.clock(), name))
            db.execute("INSERT INTO audit (at, event, machine, detail) VALUES (?, ?, ?, ?)",
                       (self.clock(), "released", name, detail))

    # -- boot server side ---------------------------------------------------

    def record_audit(self, event: str, *, machine: str | None = None, uuid: str | None = None,
                     mac: str | None = None, remote: str | None = None, detail: str = "") -> None:
        with self._tx() as db:
            db.execute("INSERT INTO audit (at, event, machine, uuid, mac, remote, detail)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (self.clock(), event, machine, uuid, mac, remote, detail))

    def discovered(self, uuid: str | None, mac: str | None, *, limit: int | None = None
                   ) -> InventoryMachine | None:
        """Record an unknown machine that PXE-booted (idempotent per UUID/MAC).

        With ``limit``, a new machine is recorded only while fewer than ``limit``
        discovered machines wait for ``accept``: anyone on the provisioning network
        can make up UUIDs and MACs. None when the limit keeps it out.
        """
        existing = self.find(uuid, mac)
        if existing is not None:
            return existing
        uuid_n = uuid_or_none(uuid)
        macs = [normalize_mac(mac)] if mac else []
        key = (uuid_n or macs[0] if (uuid_n or macs) else "unknown").replace(":", "")
        name = f"discovered-{key}"
        with self._tx() as db:
            if limit is not None and db.execute(
                    "SELECT COUNT(*) FROM machines WHERE state = ?",
                    (MachineStatus.DISCOVERED,)).fetchone()[0] >= limit:
                return None
            db.execute(
                "INSERT OR IGNORE INTO machines (name, uuid, macs, state, last_seen_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, uuid_n, json.dumps(macs), MachineStatus.DISCOVERED, self.clock(),
                 self.clock()),
            )
        machine = self.get(name)
        assert machine is not None
        return machine

    def note_script(self, name: str, token: str | None, uuid: str | None = None,
                    remote: str | None = None) -> None:
        """The machine fetched its boot script; ``token`` replaces any earlier one
        and is bound to ``remote``, the address that fetched the script.

        A machine enrolled by MAC alone learns its SMBIOS UUID here.
        """
        with self._tx() as db:
            db.execute(
                "UPDATE machines SET script_fetched_at = ?, last_seen_at = ?,"
                " token_sha256 = COALESCE(?, token_sha256),"
                " script_remote = CASE WHEN ? IS NULL THEN script_remote ELSE ? END,"
                " updated_at = ? WHERE name = ?",
                (self.clock(), self.clock(), token_digest(token) if token else None,
                 token, remote, self.clock(), name),
            )
            canonical = uuid_or_none(uuid)
            if canonical:
                db.execute("UPDATE OR IGNORE machines SET uuid = ? WHERE name = ? AND uuid IS NULL",
                           (canonical, name))

    def note_kernel(self, name: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE machines SET kernel_fetched_at = ?, last_seen_at = ? WHERE name = ?",
                       (self.clock(), self.clock(), name))

    def note_wipe_report(self, uuid: str, token: str) -> str | None:
        """A wiping machine says its wipe is done; needs the token of its wipe script.

        Returns the machine's name, or None (unknown UUID, not wiping, wrong token).
        The token matters: an early "done" powers the machine off and returns it
        to the pool, so nobody else on the network may say it.
        """
        with self._tx() as db:
            row = db.execute("SELECT name, token_sha256 FROM machines WHERE uuid = ? AND state = ?",
                             (uuid_or_none(uuid), MachineStatus.WIPING)).fetchone()
            if row is None or not row["token_sha256"] or not hmac.compare_digest(
                    row["token_sha256"], token_digest(token)):
                return None
            db.execute("UPDATE machines SET wipe_reported_at = ? WHERE name = ?",
                       (self.clock(), row["name"]))
            return str(row["name"])

    def take_config(self, uuid: str, token: str, remote: str | None = None
                    ) -> tuple[str, str] | None:
        """The config for this UUID and token, exactly once, and only to ``remote``
        when the token's script was fetched from a known address; None for every
        other caller.

        Returns ``(machine name, config)``. The config is erased in the same
        transaction, so a second fetch (or a racing one) gets None. The token's
        digest stays, so :meth:`config_refusal` can tell a second use apart.
        """
        digest = token_digest(token)
        with self._tx() as db:
            row = db.execute(
                "SELECT name, config, token_sha256, script_remote FROM machines"
                " WHERE uuid = ? AND state = ? AND config IS NOT NULL"
                " AND config_fetched_at IS NULL",
                (uuid_or_none(uuid), MachineStatus.ALLOCATED),
            ).fetchone()
            if row is None or not row["token_sha256"]:
                return None
            if not hmac.compare_digest(row["token_sha256"], digest):
                return None
            if remote is not None and row["script_remote"] not in (None, remote):
                return None
            db.execute("UPDATE machines SET config = NULL,"
                       " config_fetched_at = ?, updated_at = ? WHERE name = ?",
                       (self.clock(), self.clock(), row["name"]))
            return str(row["name"]), str(row["config"])

    def config_refusal(self, uuid: str, token: str, remote: str) -> tuple[str, str] | None:
        """Why a refused config fetch with a real token was refused, as
        ``(kind, machine name)``: ``config-refetch`` (the token was used already)
        or ``config-wrong-address`` (another address fetched its script). None
        for an unknown UUID or token: those are guesses, not theft. Read-only."""
        db = self._connect()
        try:
            row = db.execute("SELECT name, token_sha256, script_remote, config_fetched_at"
                             " FROM machines WHERE uuid = ?", (uuid_or_none(uuid),)).fetchone()
        finally:
            db.close()
        if row is None or not row["token_sha256"] or not hmac.compare_digest(
                row["token_sha256"], token_digest(token)):
            return None
        if row["config_fetched_at"] is not None:
            return "config-refetch", str(row["name"])
        if row["script_remote"] not in (None, remote):
            return "config-wrong-address", str(row["name"])
        return None
