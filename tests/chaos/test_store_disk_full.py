"""The SQLite store's filesystem fills up while ``talprov serve`` runs.

The store lives on a tmpfs of a few MB mounted for the test (the tests run as
root; a user without the right to mount gets a failure that says so, not a
skip). A filler file leaves the store a little room; creations through the API
then fill the rest. While the disk is full, writes must answer 503 with a clear
body (never a 500, never a traceback), reads must keep working, and once the
filler is removed, writes must succeed again without restarting the process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import SEEN_OUTPUT, Home
from tests.unit.service.conftest import TOKENS, WRITE, request_body
from tests.unit.service.serving import ServeProcess, wait_until

DISK_BYTES = 8 * 1024 * 1024
#: Room left for the store once the filler is written: several creations fit.
ROOM_BYTES = 1024 * 1024
#: Each creation carries a config this big, so the room runs out in a few dozen.
CONFIG_BYTES = 16 * 1024
MAX_CREATES = 400


@contextlib.contextmanager
def small_disk(mount_point: Path) -> Iterator[Path]:
    """A tmpfs of DISK_BYTES at ``mount_point``, unmounted afterwards."""
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700",
                           "tmpfs", str(mount_point)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        pytest.fail("this test mounts a small tmpfs and needs root (or CAP_SYS_ADMIN): "
                    f"mount said {done.stderr.strip()!r}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Write a filler file that leaves ``leave`` bytes free on ``disk``."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    filler = disk / "filler"
    with filler.open("wb") as out:
        out.write(b"\0" * max(0, free - leave))
    return filler


def config_of(n: int) -> str:
    # Random bytes (hex) so nothing compresses; a comment keeps it a valid config.
    noise = os.urandom(CONFIG_BYTES // 2).hex()
    return f"version: v1alpha1\n# {n} {noise}\nmachine: {{type: worker}}\n"


def test_a_full_store_disk_answers_503_keeps_reads_and_recovers(home: Home) -> None:
    with small_disk(home.root / "disk") as disk:
        home.write_config(store=f"sqlite:///{disk / 'state.db'}",
                          service={"tokens": TOKENS, "reconcile_interval": 0.2})
        server = ServeProcess(home.env(), home.root)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for n in range(3):
                    response = client.post("/v1/machine-requests", headers=WRITE,
                                           json=request_body(f"before-{n}"))
                    assert response.status_code == 201, response.text
                filler = fill(disk, ROOM_BYTES)
                statuses: list[int] = []
                for n in range(MAX_CREATES):
                    response = client.post("/v1/machine-requests", headers=WRITE,
                                           json=request_body(f"fill-{n}", config=config_of(n)))
                    statuses.append(response.status_code)
                    if response.status_code != 201:
                        break
                SEEN_OUTPUT.append(str(statuses))
                assert statuses[-1] == 503, (statuses[-5:], response.text)
                # A clear answer: the client learns the store is full, not "down".
                assert "no space left" in response.json()["detail"], response.text
                assert statuses.count(201) >= 3, statuses  # the room did take writes
                # Reads keep working while the disk is full.
                listed = client.get("/v1/machine-requests", headers=WRITE)
                assert listed.status_code == 200, listed.text
                ids = {item["id"] for item in listed.json()["items"]}
                assert {f"before-{n}" for n in range(3)} <= ids
                assert client.get("/v1/machine-requests/before-0",
                                  headers=WRITE).status_code == 200
                # Still full: another write gets 503 again, not a 500.
                again = client.post("/v1/machine-requests", headers=WRITE,
                                    json=request_body("while-full", config=config_of(-1)))
                assert again.status_code == 503, again.text
                assert "no space left" in again.json()["detail"], again.text
                # Space returns: the same process takes writes again.
                filler.unlink()
                after = client.post("/v1/machine-requests", headers=WRITE,
                                    json=request_body("after-space"))
                assert after.status_code == 201, after.text
                wait_until(lambda: client.get("/v1/machine-requests/after-space",
                                              headers=WRITE).json()["stage"] == "provisioned",
                           30, "the request made after the disk emptied to be provisioned")
        finally:
            code = server.terminate()
        output = server.output()
        assert "Traceback" not in output, output[-3000:]
        assert code == 0, output[-3000:]
