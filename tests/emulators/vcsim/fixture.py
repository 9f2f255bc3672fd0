
"""pytest fixture ``vcsim``: govmomi's vCenter simulator in its own process, one per test.

The binary is built by ``build.sh`` (same folder) from Debian's govmomi sources on
first use and reused afterwards; when it cannot be built (no apt, no Go) the
fixture fails with build.sh's output instead of skipping silently. The simulator
listens on 127.0.0.1 on a port the system picks, serves HTTPS with a certificate
made at start-up (``ca_file``), and accepts exactly one user and password.

Inventory of the VPX model: datacenter ``DC0``, cluster ``DC0_C0`` (hosts
``DC0_C0_H0``..``H2``), standalone host ``DC0_H0``, datastore ``LocalDS_0``,
networks ``VM Network`` and ``DC0_DVPG0``, four powered-on VMs.
"""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from talprov.demo_platforms.common import EmulatorProcess
from talprov.demo_platforms.vmware import start_vcsim as start_vcsim_process

HERE = Path(__file__).parent
BUILD_SCRIPT = HERE / "build.sh"
BUILD_TIMEOUT = 600.0
USER = "administrator@vsphere.local"
PASSWORD = "vcsim-secret"
_build_lock = threading.Lock()
_built: list[Path] = []


@dataclass
class VcsimServer:
    """A running simulator: its SDK URL, credentials and certificate."""

    url: str
    ca_file: Path
    user: str = USER
    password: str = PASSWORD
    emulator: EmulatorProcess | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def thumbprint(self) -> str:
        """SHA-256 of the server certificate as AA:BB:... (what vSphere shows)."""
        der = ssl.PEM_cert_to_DER_cert(self.ca_file.read_text())
        digest = hashlib.sha256(der).hexdigest().upper()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()


def vcsim_binary() -> Path:
    """The simulator binary, built by build.sh if needed (once per test session).

    Raises ``RuntimeError`` carrying build.sh's output when the build fails.
    """
    with _build_lock:
        if _built:
            return _built[0]
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True,
            timeout=BUILD_TIMEOUT, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"building vcsim with {BUILD_SCRIPT} failed ({result.returncode}):\n"
                + (result.stdout + result.stderr)[-3000:]
            )
        binary = Path(result.stdout.strip().splitlines()[-1])
        _built.append(binary)
        return binary


def start_vcsim(workdir: Path, user: str = USER, password: str = PASSWORD,
                method_delays: Mapping[str, int] | None = None) -> VcsimServer:
    """Start a simulator (SOAP methods taking ``method_delays`` ms); raises RuntimeError
    if it does not come up in time."""
    ca_file = workdir / "vcsim-ca.pem"
    emulator, url = start_vcsim_process(vcsim_binary(), workdir, user, password, ca_file,
                                        method_delays)
    return VcsimServer(url=url, ca_file=ca_file, user=user, password=password, emulator=emulator)


def handler_panics(log: Path) -> list[str]:
    """The lines of a vcsim log where a request handler panicked (Go's net/http logs
    "http: panic serving ..." and closes the connection without an answer)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [line for line in text.splitlines() if "http: panic serving" in line]


@pytest.fixture
def vcsim(tmp_path: Path) -> Iterator[VcsimServer]:
    """A fresh vCenter simulator (VPX model) for one test, stopped afterwards.

    A handler that panicked fails the test at teardown, with the log's lines: the
    client saw only a dropped connection ("vCenter unreachable"), which a test
    may pass through by retrying, or fail on with nothing that says why; the log
    is gone once the temporary folder is.
    """
    server = start_vcsim(tmp_path)
    try:
        yield server
    finally:
        server.stop()
    panics = handler_panics(server.emulator.log) if server.emulator is not None else []
    if panics:
        pytest.fail("vcsim panicked serving a request:\n" + "\n".join(panics[:5]))
