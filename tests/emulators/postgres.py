"""A throw-away PostgreSQL server for tests, reachable only through a Unix socket.

``postgres_server`` (session scope) runs ``initdb`` and ``postgres`` from
Debian's ``postgresql`` package into a temporary directory and stops the server
when the session ends. ``postgres_url`` (function scope) creates a fresh
database on it per test and returns a ``postgresql+psycopg://`` URL.

PostgreSQL refuses to run as root, so when the tests run as root the server runs
as the ``postgres`` system user (or ``nobody``). Missing binaries or psycopg
fail the tests that need them (``scripts/install-system-deps.sh`` installs them).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_SUPERUSER = "talprov"
_START_TIMEOUT = 30.0
_database_numbers = itertools.count(1)


def find_postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``, or None."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    return None


def _service_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and no postgres/nobody user to run PostgreSQL as")


def _child_setup(user: pwd.struct_passwd | None, parent_pid: int) -> Callable[[], None]:
    """What the child runs before exec: drop root, then ask to be stopped with the
    test process. The order matters: Linux clears the parent-death signal when the
    uid changes."""

    def setup() -> None:
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        with contextlib.suppress(OSError, AttributeError):
            # PR_SET_PDEATHSIG = 1; SIGINT is PostgreSQL's fast shutdown. Then no
            # server outlives a test run that was killed.
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)
        if os.getppid() != parent_pid:
            os._exit(1)  # the test process died before the signal was armed

    return setup


@dataclass
class PostgresServer:
    """A running server: its socket directory and how to reach it."""

    socket_dir: Path
    process: subprocess.Popen[bytes]
    #: Where initdb put the cluster (``data/``) and the log; ``start_again`` reuses it.
    workdir: Path | None = None
    #: Commits reach the WAL (the kernel's copy; fsync stays off) before they are
    #: acknowledged, so a server process that crashes keeps every commit it
    #: acknowledged. Off (faster) loses the last ones: only for servers never crashed.
    durable: bool = False
    #: Also listen on 127.0.0.1 at this port (benches put a latency proxy in
    #: front of it); None: the Unix socket only, at PostgreSQL's default port.
    tcp_port: int | None = None

    def url(self, database: str) -> str:
        port = f"&port={self.tcp_port}" if self.tcp_port is not None else ""
        return f"postgresql+psycopg://{_SUPERUSER}@/{database}?host={self.socket_dir}{port}"

    def admin_execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host=str(self.socket_dir), port=self.tcp_port or 5432, user=_SUPERUSER,
            dbname="postgres", autocommit=True,
        ) as conn:
            conn.execute(sql.encode())

    def crash(self) -> None:
        """SIGKILL the postmaster, as a crashed host would; its backends notice and
        exit. The data directory stays: :meth:`start_again` recovers from it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def start_again(self) -> None:
        """Start the stopped (or crashed) server on the same data directory and socket;
        returns once it accepts connections."""
        if self.workdir is None or self.process.poll() is None:
            raise RuntimeError("start_again needs a stopped server started by start_postgres")
        self.process = _launch(self.workdir, self.durable, self, self.tcp_port)

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGINT is PostgreSQL's "fast shutdown": roll back clients, exit cleanly.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_postgres(workdir: Path, *, durable: bool = False,
                   tcp_port: int | None = None) -> PostgresServer:
    """initdb + postgres in ``workdir``; returns once the server accepts connections.
    ``durable`` and ``tcp_port``: see :class:`PostgresServer`."""
    bindir = find_postgres_bin()
    if bindir is None:
        raise FileNotFoundError("initdb not found")
    user = _service_user()
    setup = _child_setup(user, os.getpid())
    data_dir, socket_dir = workdir / "data", workdir / "sock"
    socket_dir.mkdir()
    if user is not None:
        for path in (workdir, socket_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            _SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ],
        check=True,
        capture_output=True,
        preexec_fn=setup,
    )
    return PostgresServer(socket_dir=socket_dir,
                          process=_launch(workdir, durable, None, tcp_port),
                          workdir=workdir, durable=durable, tcp_port=tcp_port)


def _launch(workdir: Path, durable: bool, server: PostgresServer | None,
            tcp_port: int | None = None) -> subprocess.Popen[bytes]:
    """Run ``postgres`` on ``workdir``'s cluster; returns once it accepts connections.
    A crashed server's backends may hold its shared memory for a moment: the new
    postmaster then exits at once, and is started again until the deadline."""
    import psycopg

    bindir = find_postgres_bin()
    if bindir is None:
        raise FileNotFoundError("initdb not found")
    setup = _child_setup(_service_user(), os.getpid())
    data_dir, socket_dir = workdir / "data", workdir / "sock"
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        log = (workdir / "postgres.log").open("ab")
        process = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data_dir),
                "-k",
                str(socket_dir),
                # Tests reach it through the socket only; benches may add loopback.
                "-c",
                f"listen_addresses={'127.0.0.1' if tcp_port else ''}",
                "-c",
                f"port={tcp_port or 5432}",
                "-c",
                "fsync=off",
                "-c",
                f"synchronous_commit={'on' if durable else 'off'}",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=60",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=setup,  # noqa: PLW1509 - runs before any test starts a thread
        )
        log.close()
        probe = server or PostgresServer(socket_dir=socket_dir, process=process,
                                         tcp_port=tcp_port)
        while process.poll() is None:
            try:
                probe.admin_execute("SELECT 1")
                return process
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    process.kill()
                    raise
                time.sleep(0.05)
        if time.monotonic() > deadline:
            raise RuntimeError(
                "postgres exited at start: " + (workdir / "postgres.log").read_text()[-2000:]
            )
        time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session, stopped and deleted at the end."""
    import psycopg  # noqa: F401 - fail here, clearly, when the driver is missing

    if find_postgres_bin() is None:
        pytest.fail("PostgreSQL server binaries not installed (apt-get install postgresql)")
    # Under /tmp rather than $TMPDIR or pytest's base: both may be root-only,
    # and the server runs as another user when the tests run as root.
    workdir = Path(tempfile.mkdtemp(prefix="talprov-pg-", dir="/tmp"))
    try:
        server = start_postgres(workdir)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database, dropped after the test."""
    name = f"t{os.getpid()}_{next(_database_numbers)}"
    postgres_server.admin_execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.url(name)
    postgres_server.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
