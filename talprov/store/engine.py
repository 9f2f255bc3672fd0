"""Engine set-up: SQLite made safe for several processes, any other URL as given.

SQLite gets WAL (readers do not block the writer), foreign keys, a busy timeout,
and ``BEGIN IMMEDIATE`` for write transactions: a deferred transaction that reads
and then writes can fail with "database is locked" at once, without waiting,
when another process wrote in between; taking the write lock up front makes the
busy timeout apply instead.

A server database's pooled connections are checked without a round trip: a
connection the server ended (restart, crash, terminated backend) has its socket
closed or a goodbye message waiting, which a zero-timeout poll sees; such a
connection is replaced before use. SQLAlchemy's ``pool_pre_ping`` would send a
``SELECT 1`` on every checkout instead, one more round trip per transaction.
Connections are also replaced after :data:`RECYCLE_SECONDS`, before common NAT
and load-balancer idle timeouts drop them silently (no FIN: the poll cannot tell).
"""

from __future__ import annotations

import os
import select
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from talprov.store.errors import StoreError, StoreFull, UnsupportedStore
from talprov.store.guard import SQLITE_PROGRESS_STEPS, QueryGuard, current_guard

BUSY_TIMEOUT_SECONDS = 30.0
#: Seconds of one SQLite busy wait for a write lock, between which signal
#: handlers run (see _begin_immediate).
BUSY_SLICE_SECONDS = 0.1
#: Age at which a pooled server connection is replaced: under the idle timeouts of
#: Azure's load balancer (240 s) and AWS's NAT gateway (350 s).
RECYCLE_SECONDS = 180
#: Connections a store's pool opens at most, and keeps open.
POOL_SIZE = 15
#: SQLite's SQLITE_FULL and PostgreSQL's SQLSTATE disk_full: no room left to write.
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"
_IMMEDIATE = "talprov_immediate"
# Concurrent inserts of one key can only collide on databases without an up-front
# write lock (PostgreSQL): the loser retries, re-reads and takes the other branch.
_INSERT_RACE_ATTEMPTS = 3
_T = TypeVar("_T")


def masked_url(url: str | sa.URL) -> str:
    """The URL with any password replaced, fit for messages and logs: the
    password of its login, a query parameter naming a password (libpq takes
    ``?password=`` and ``?sslpassword=``), and a host holding an ``@`` (a
    password's ``@`` not percent-encoded, which the parser splits at: the rest of
    the password would read as the host). Pure."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return "<invalid store URL>"
    if parsed.host and "@" in parsed.host:
        parsed = parsed.set(host="***")
    query = {key: ("***" if "pass" in key.lower() else value)
             for key, value in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)


def is_memory_url(url: str) -> bool:
    """Whether ``url`` is an in-memory SQLite store, which only its own process sees."""
    try:
        return _is_memory_sqlite(sa.make_url(url))
    except sa.exc.ArgumentError:
        return False


def missing_sqlite_file(url: str) -> Path | None:
    """The file SQLite store ``url`` names (see :func:`_sqlite_file`), absolute, when
    it does not exist; None for a file that exists, a store in memory and any
    other database. Creates nothing. Raises :class:`UnsupportedStore` for a
    string that is not a URL."""
    path = _sqlite_file(_parsed(url))
    return None if path is None or path.exists() else path


def holds_no_file_yet(url: str) -> bool:
    """Whether ``url`` is a SQLite store with no file yet (or in memory): one that
    holds no records, found out without creating anything. Raises
    :class:`UnsupportedStore` for a string that is not a URL."""
    parsed = _parsed(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    path = _sqlite_file(parsed)
    return path is None or not path.exists()


def _parsed(url: str) -> sa.URL:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise UnsupportedStore("store URL is not a valid SQLAlchemy URL") from None
    backend, plus, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        # libpq and psycopg take postgres:// as postgresql://; SQLAlchemy does not.
        parsed = parsed.set(drivername=f"postgresql{plus}{driver}")
    return parsed


def _sqlite_file(url: sa.URL) -> Path | None:
    """The file a SQLite URL names, absolute; None in memory or for another database."""
    name = _sqlite_name(url)
    return None if name is None else Path(name).absolute()


def _sqlite_name(url: sa.URL) -> str | None:
    """The file name a SQLite URL gives, as written (maybe relative); None in memory
    or for another database.

    As SQLAlchemy's pysqlite dialect reads it: a ``file:`` database is a SQLite
    URI only with ``uri=true`` in the query (then ``//localhost`` or ``//`` may
    precede the path, escapes are decoded, ``mode=memory`` and ``:memory:`` mean
    no file); without it, ``file:`` is part of a plain file name."""
    if url.get_backend_name() != "sqlite":
        return None
    name = url.database or ""
    if name.startswith("file:") and sa.util.asbool(url.query.get("uri", "false")):
        if url.query.get("mode") == "memory":
            return None
        name = name.removeprefix("file:")
        if name.startswith("//"):  # an authority: empty or localhost, then the path
            name = "/" + name[2:].partition("/")[2]
        name = unquote(name)
    if name in ("", ":memory:"):
        return None
    return name


def store_backend(url: str) -> str:
    """The database a store URL names (sqlite, postgresql, mysql ...), "-" for a
    string that is no URL. Pure."""
    try:
        return _parsed(url).get_backend_name()
    except UnsupportedStore:
        return "-"


def relative_sqlite_path(url: str) -> str | None:
    """The file name of SQLite store ``url`` when it is a relative path (which
    SQLite resolves against the current directory of each process that opens it,
    wherever the URL was written), else None. Raises :class:`UnsupportedStore` for
    a string that is not a URL. Pure."""
    name = _sqlite_name(_parsed(url))
    return name if name is not None and not Path(name).is_absolute() else None


def check_store_url(url: str) -> None:
    """Refuse ``url`` as opening the store refuses it (:func:`create_store_engine`,
    the same checks), without opening it: not a URL or not SQLite or PostgreSQL
    (:class:`UnsupportedStore`), its database driver missing, a SQLite file whose
    directory does not exist (:class:`StoreError`). Creates no file, connects to
    no server, reads no record; messages hide any password. Idempotent."""
    parsed = _supported(url)
    _check_sqlite_directory(parsed)
    # Building the engine imports the driver (psycopg) and connects nowhere.
    _engine(parsed, {}).dispose()


def _supported(url: str) -> sa.URL:
    """``url`` parsed, its driver the one talprov uses; raises
    :class:`UnsupportedStore` for a string that is not a URL or a database other
    than SQLite and PostgreSQL. Pure."""
    parsed = _parsed(url)
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        # Its SQL (locks, upserts, the schema's revisions) is written for these two.
        raise UnsupportedStore(
            f"store {masked_url(parsed)}: a {parsed.get_backend_name()} store is not "
            "supported; talprov stores in SQLite (sqlite:///PATH) or PostgreSQL "
            "(postgresql://...)")
    if parsed.drivername == "postgresql":
        # SQLAlchemy's default PostgreSQL driver is psycopg2; talprov ships psycopg 3.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _check_sqlite_directory(url: sa.URL) -> None:
    """Raise :class:`StoreError` when the SQLite file ``url`` names cannot be made
    because its directory is missing (SQLite only says "unable to open database
    file", at the first query): SQLite creates the file, no one the directory."""
    path = _sqlite_file(url)
    if path is None or path.parent.is_dir():
        return
    what = "is not a directory" if path.parent.exists() else "does not exist"
    raise StoreError(f"store {masked_url(url)}: the directory {path.parent} {what} "
                     "(SQLite creates the database file, not its directory)")


def _engine(url: sa.URL, kwargs: dict[str, Any]) -> Engine:
    """``sa.create_engine``, which imports the driver and connects nowhere; raises
    :class:`StoreError` when the driver is not installed."""
    try:
        return sa.create_engine(url, **kwargs)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise StoreError(f"store {masked_url(url)}: database driver missing: {exc}") from None


def _is_memory_sqlite(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and _sqlite_file(url) is None


def _precreate_private_file(url: sa.URL) -> None:
    # The file holds machine configs (maybe unencrypted): create it owner-only
    # before SQLite creates it with the umask's mode. SQLite gives -wal and -shm
    # the same mode as the database file.
    if url.get_backend_name() != "sqlite" or _is_memory_sqlite(url) or url.database is None:
        return
    if url.database.startswith("file:"):
        return  # URI filenames: leave them to SQLite
    path = Path(url.database)
    if path.exists() or not path.parent.is_dir():
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # another process won the race; it created it the same way
    os.close(fd)


def create_store_engine(url: str) -> tuple[Engine, threading.RLock | None]:
    """An engine for ``url`` plus, for in-memory SQLite, a lock serialising its use.

    A bare ``postgresql://`` URL uses psycopg 3. Raises :class:`StoreError` for a
    malformed URL, a missing database driver or a SQLite file in a directory that
    does not exist (:func:`check_store_url`'s checks).
    Statement parameters are hidden from SQLAlchemy's error messages because
    they may hold machine configurations.
    """
    parsed = _supported(url)
    _check_sqlite_directory(parsed)
    # The pool keeps its connections: as many as SQLAlchemy's default allows at
    # once (5 + 10 overflow), but with the default, under load (the API's 40
    # threads), each overflow connection was opened, set up (PRAGMAs; a server
    # process on PostgreSQL) and closed again for a single transaction.
    kwargs: dict[str, Any] = {"hide_parameters": True}
    pooled = {"pool_size": POOL_SIZE, "max_overflow": 0}
    memory_lock: threading.RLock | None = None
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False}
        if _is_memory_sqlite(parsed):
            # One shared connection, else every pooled connection is a new empty database.
            kwargs["poolclass"] = StaticPool
            memory_lock = threading.RLock()
        else:
            kwargs.update(pooled)
        _precreate_private_file(parsed)
    else:
        kwargs.update(pooled, pool_recycle=RECYCLE_SECONDS)
    engine = _engine(parsed, kwargs)
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine, memory=memory_lock is not None)
    else:
        event.listen(engine, "checkout", _refuse_ended_connection)
    return engine, memory_lock


def _refuse_ended_connection(dbapi_connection: Any, _record: ConnectionPoolEntry,
                             _proxy: Any) -> None:
    """Make the pool replace a connection the server has ended (pool "checkout" event).

    An idle connection's socket has nothing to read while the server keeps it:
    PostgreSQL sends nothing unasked. Readable means the server said goodbye
    (FATAL "terminating connection") or closed it. Raising DisconnectionError
    makes SQLAlchemy discard it and check out another (a new one when the pool
    holds no other), up to three times. A false alarm costs one reconnect.
    """
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return  # a driver without a socket to look at: nothing to check
    try:
        descriptor = fileno()
    except Exception:  # the driver knows it is closed already
        raise sa.exc.DisconnectionError("connection already closed") from None
    poller = select.poll()
    poller.register(descriptor, select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        raise sa.exc.DisconnectionError("the server ended this connection")


def _enable_wal(cursor: Any) -> None:
    """Switch a file database to WAL once; later connections find it set.

    The switch needs the database to itself, and SQLite answers "database is
    locked" at once (no busy wait) when another process is mid-transaction, as
    when two processes open a new store together: retry for a while.
    """
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _configure_sqlite(engine: Engine, *, memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 module so that BEGIN is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not memory:
                _enable_wal(cursor)
                # NORMAL is durable across application crashes in WAL mode.
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_IMMEDIATE, False):
            _begin_immediate(conn)
        else:
            conn.exec_driver_sql("BEGIN")


def _begin_immediate(conn: Connection) -> None:
    """``BEGIN IMMEDIATE``, waiting for another writer's lock up to
    :data:`BUSY_TIMEOUT_SECONDS` as ever, but in slices of :data:`BUSY_SLICE_SECONDS`.

    SQLite's busy wait is one C call that no signal breaks, and Python runs its
    signal handlers only between bytecodes: Ctrl-C, SIGTERM or a --wait's
    deadline that came during it acted only when the lock came, up to 30 s later
    (a first signal that seemed lost, CI). Between slices they run. A lock still
    held at the deadline fails as before (one attempt without waiting, through
    SQLAlchemy, whose error becomes the StoreError naming the store).
    """
    raw = conn.connection.dbapi_connection
    assert raw is not None  # a connection inside its begin is checked out
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    raw.execute(f"PRAGMA busy_timeout = {int(BUSY_SLICE_SECONDS * 1000)}")
    try:
        while time.monotonic() < deadline:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    break  # not a wait: the attempt below reports it
        raw.execute("PRAGMA busy_timeout = 0")
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")


@contextmanager
def transaction(
    engine: Engine, lock: threading.RLock | None, *, write: bool
) -> Iterator[Connection]:
    """One transaction; committed on success, rolled back on any exception.

    Connection failures and lock timeouts become :class:`StoreError` naming the
    URL without its password; a full disk becomes :class:`StoreFull` (a
    StoreError too). Inside :func:`talprov.store.guard.guarded` the
    statements obey the guard's deadline and cancel (a :class:`StoreError` when
    they are stopped).
    """
    guard = current_guard()
    if guard is not None and guard.should_stop():
        raise StoreError(f"store {masked_url(engine.url)}: query deadline passed or cancelled")
    if lock is not None:
        lock.acquire()
    try:
        with engine.connect() as conn:
            if write:
                conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin(), _obeying(conn, guard):
                yield conn
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        error = StoreFull if _is_disk_full(exc.orig) else StoreError
        raise error(f"store {masked_url(engine.url)}: {_first_line(exc.orig)}") from None
    finally:
        if lock is not None:
            lock.release()


@contextmanager
def _obeying(conn: Connection, guard: QueryGuard | None) -> Iterator[None]:
    """Make the statements of ``conn``'s open transaction stop when ``guard`` says so."""
    if guard is None:
        yield
        return
    driver: Any = conn.connection.driver_connection
    if conn.dialect.name == "sqlite":
        driver.set_progress_handler(lambda: 1 if guard.should_stop() else 0,
                                    SQLITE_PROGRESS_STEPS)
        try:
            with guard.interruptible(driver.interrupt):
                yield
        finally:
            driver.set_progress_handler(None, 0)
        return
    if conn.dialect.name == "postgresql":
        # LOCAL: the setting ends with the transaction, so a pooled connection
        # handed to a worker later carries no timeout.
        milliseconds = max(1, int(guard.seconds_left() * 1000))
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")
        with guard.interruptible(driver.cancel):
            # A cancel since the transaction's own check (connecting, BEGIN, the
            # SET above) reached an idle connection, where PostgreSQL drops it:
            # the statements would run on to statement_timeout. Looked at again
            # now that a cancel reaches them (only the driver's send is left).
            if guard.should_stop():
                raise StoreError(f"store {masked_url(conn.engine.url)}: "
                                 "query deadline passed or cancelled")
            yield
        return
    yield  # other databases: no deadline (not a supported store)


def _is_disk_full(exc: BaseException | None) -> bool:
    """Whether the driver's error says the store has no room left to write."""
    return (getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL
            or getattr(exc, "sqlstate", None) == _PG_DISK_FULL)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else "database error"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def retry_insert_race(operation: Callable[[], _T]) -> _T:
    """Run ``operation`` (one whole transaction that reads, then inserts or updates)
    again when a concurrent insert of the same key beat it; re-raises the
    ``IntegrityError`` after a few attempts."""
    for attempt in range(_INSERT_RACE_ATTEMPTS):
        try:
            return operation()
        except sa.exc.IntegrityError:
            if attempt + 1 >= _INSERT_RACE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
