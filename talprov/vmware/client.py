"""One pyvmomi session to vCenter with talprov's TLS rules and one re-login.

TLS: verification is on by default (the system's CAs), ``ca_file`` trusts one CA
or self-signed certificate, ``thumbprint`` pins the certificate (checked on every
handshake, before any request is sent), ``insecure`` turns checking off. An
explicit ``ssl.SSLContext`` is always passed: pyvmomi would otherwise silently
skip verification for ``localhost``. pyvmomi talks ``http.client``, so
``REQUESTS_CA_BUNDLE`` and proxy variables do not change what is trusted.

Sessions expire on vCenter (idle timeout, restart); a call that meets
``NotAuthenticated`` logs in again once and is repeated. A read that meets a
passing failure (a dropped connection, ``SystemError``, a busy vCenter) is tried
again a few times within the call (``read``); a write never is: it may have acted
before its answer was lost, and only the calling step can look whether it did.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import random
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

from talprov.providers.errors import (
    InstanceAccessRefused,
    ProviderError,
    StepTimeout,
    Transient,
    ca_file_unusable,
    certificate_not_verified,
    naming_endpoint,
)
from talprov.providers.retry import RetryPolicy
from talprov.vmware import sdk
from talprov.vmware.config import VSphereConfig
from talprov.vmware.connections import skip_closed_connections
from talprov.vmware.errors import is_fault, task_error, translate

T = TypeVar("T")
ServiceInstance = Any
"""pyVmomi's ``vim.ServiceInstance`` (untyped)."""

UPLOAD_CHUNK = 1 << 20
#: How ``read`` retries within a call: short waits, since one step reads several
#: times and a failed read fails the whole step, retried only seconds later.
READ_POLICY = RetryPolicy(attempts=4, initial=0.25, maximum=2.0)
#: Seconds before the first look at a task just started; later looks wait half
#: the time the step has waited so far, up to ``poll_interval``.
FIRST_TASK_POLL = 0.1


class PinnedContext(ssl.SSLContext):
    """A TLS context that accepts exactly the certificate with the pinned digest.

    pyvmomi checks its own ``thumbprint`` argument only after CA verification
    failed (and then turns verification off in the caller's context for good), so
    the pin is enforced here instead, on every handshake of every connection.
    """

    pinned_hex: str = ""

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        try:
            check_pinned(sock, self.pinned_hex)
        except InstanceAccessRefused:
            sock.close()
            raise
        return sock


def ssl_context(config: VSphereConfig) -> ssl.SSLContext:
    """The TLS context for vCenter connections (see the module docstring)."""
    if config.thumbprint_hex:
        pinned = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
        pinned.check_hostname = False
        pinned.verify_mode = ssl.CERT_NONE  # the pin replaces CA and name checks
        pinned.pinned_hex = config.thumbprint_hex
        return pinned
    if config.insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=config.ca_file)
    except OSError as exc:  # ssl.SSLError too: the file went after the config was read
        what = naming_endpoint("trust vCenter's certificate", config.url)
        raise (ca_file_unusable(config.ca_file, what)
               or translate(exc, what, trust=config.trust)) from None


def check_pinned(sock: ssl.SSLSocket, thumbprint_hex: str) -> None:
    """Raise ``InstanceAccessRefused`` unless the peer's certificate has this
    SHA-1/256/512 digest."""
    der = sock.getpeercert(binary_form=True) or b""
    algorithm = {40: "sha1", 64: "sha256", 128: "sha512"}[len(thumbprint_hex)]
    if not hmac.compare_digest(hashlib.new(algorithm, der).hexdigest(), thumbprint_hex):
        raise InstanceAccessRefused(
            certificate_not_verified("vCenter", "thumbprint", pin="thumbprint"))


class Session:
    """A logged-in ``vim.ServiceInstance`` whose ``content`` is read once.

    pyVmomi reads ``si.content`` from vCenter on every access (a round trip each
    time); it does not change within a session, so it is kept here. Everything
    else is the service instance's own.
    """

    def __init__(self, si: Any) -> None:
        self.si = si
        self._stub = si._stub
        skip_closed_connections(self._stub)  # see connections.py
        self.content = si.RetrieveContent()
        self._views: dict[tuple[str, str], Any] = {}
        self._views_lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.si, name)

    def container_view(self, root: Any, obj_type: type) -> Any:
        """A ContainerView of every ``obj_type`` below ``root``, made once per session.

        vCenter keeps a view up to date as objects come and go, and ends it with
        the session; making one per retrieval (and destroying it after) cost two
        extra round trips on every listing.
        """
        key = (str(root._moId), str(getattr(obj_type, "_wsdlName", obj_type.__name__)))
        with self._views_lock:
            view = self._views.get(key)
            if view is None:
                view = self.content.viewManager.CreateContainerView(root, [obj_type], True)
                self._views[key] = view
            return view

    def forget_view(self, view: Any) -> None:
        """Stop using ``view`` (vCenter no longer knows it); the next retrieval makes one."""
        with self._views_lock:
            self._views = {k: v for k, v in self._views.items() if v is not view}


class VSphereClient:
    """A logged-in vCenter session; safe to share between threads."""

    def __init__(self, config: VSphereConfig, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        self._jitter = random.Random()  # noqa: S311 - jitter, not cryptography
        self.host, self.port = config.host_port
        self.context = ssl_context(config)
        self._si: ServiceInstance | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VSphereClient({self.host}:{self.port})"

    @property
    def endpoint(self) -> str:
        """vCenter's URL, as errors name it."""
        return f"https://{self.host}:{self.port}"

    # -- session ------------------------------------------------------------

    def _login(self) -> ServiceInstance:
        from pyVim import connect

        smart_connect: Any = connect.SmartConnect
        try:
            return Session(smart_connect(
                protocol="https", host=self.host, port=self.port,
                user=self.config.username, pwd=self.config.password.get_secret_value(),
                sslContext=self.context,
                connectionPoolTimeout=-1,
            ))
        except Exception as exc:
            raise translate(exc, f"log in to vCenter as {self.config.username}",
                            endpoint=self.endpoint, trust=self.config.trust) from None

    def _session(self) -> ServiceInstance:
        with self._lock:
            if self._si is None:
                self._si = self._login()
            return self._si

    def _relogin(self, stale: ServiceInstance) -> ServiceInstance:
        with self._lock:
            if self._si is stale:  # another thread may have renewed it already
                self._si = self._login()
            return self._si

    def close(self) -> None:
        """Log out (best effort). Idempotent."""
        with self._lock:
            si, self._si = self._si, None
        if si is not None:
            # Logging out of a dead session is harmless.
            with contextlib.suppress(Exception):
                si.content.sessionManager.Logout()

    def call(self, what: str, fn: Callable[[ServiceInstance], T]) -> T:
        """Run ``fn(service_instance)``; translate its errors (see ``errors.translate``).

        On ``NotAuthenticated`` the session is renewed once and the call repeated.
        Raises ``ProviderError`` subclasses only. Idempotent exactly when ``fn`` is.
        """
        si = self._session()
        try:
            return fn(si)
        except Exception as exc:
            if not is_fault(exc, "NotAuthenticated"):
                raise translate(exc, what, endpoint=self.endpoint,
                                trust=self.config.trust) from None
        si = self._relogin(si)
        try:
            return fn(si)
        except Exception as exc:
            raise translate(exc, what, endpoint=self.endpoint, trust=self.config.trust) from None

    def read(self, what: str, fn: Callable[[ServiceInstance], T]) -> T:
        """``call`` for a read-only ``fn``, tried again on ``Transient`` failures up to
        ``READ_POLICY.attempts`` times (jittered waits through the injected sleeper).

        Raises the last ``Transient``, or any other ``ProviderError`` at once. Idempotent.
        """
        attempt = 1
        while True:
            try:
                return self.call(what, fn)
            except Transient:
                if attempt >= READ_POLICY.attempts:
                    raise
            # Not the error's retry_after: that is translate's default wait for a
            # step's next attempt, not something vCenter asked for.
            self._sleep(READ_POLICY.delay(attempt, None, self._jitter))
            attempt += 1

    @property
    def cookie(self) -> str:
        """The session cookie (for NFC uploads, which go around the SOAP stub)."""
        return str(self._session()._stub.cookie or "")

    # -- property collector -------------------------------------------------

    def retrieve(
        self, what: str, obj_type: type, paths: Sequence[str], root: Any = None
    ) -> list[tuple[Any, dict[str, Any]]]:
        """(object, {path: value}) for every ``obj_type`` below ``root`` (default: all).

        One ``RetrievePropertiesEx`` (plus continuations for large inventories),
        whatever the number of objects, through the session's container view of
        ``root`` (made on first use). Read-only; tried again on passing failures
        (``read``).
        """
        return self.read(what, lambda si: _retrieve(si, obj_type, paths, root))

    def retrieve_in_folders(self, what: str, obj_type: type, paths: Sequence[str]
                            ) -> list[tuple[Any, dict[str, Any]]]:
        """(object, {path: value}) for every ``obj_type`` in the root folder or a
        folder below it, at any depth (where datacenters live): one
        ``RetrievePropertiesEx`` (plus continuations) that walks ``childEntity``
        from the root folder, with no container view to make first (a view of its
        own was one more round trip per session). Read-only; tried again on
        passing failures (``read``)."""
        vmodl = sdk.vmodl()
        vim = sdk.vim()

        def run(si: ServiceInstance) -> list[tuple[Any, dict[str, Any]]]:
            collector = vmodl.query.PropertyCollector
            folders = collector.TraversalSpec(
                name="folders", type=vim.Folder, path="childEntity", skip=False,
                selectSet=[collector.SelectionSpec(name="folders")])
            spec = collector.FilterSpec(
                objectSet=[collector.ObjectSpec(obj=si.content.rootFolder, skip=True,
                                                selectSet=[folders])],
                propSet=[collector.PropertySpec(type=obj_type, pathSet=list(paths))])
            return _results(si.content.propertyCollector, spec, 500)

        return self.read(what, run)

    def get(self, what: str, obj: Any, paths: Sequence[str]) -> dict[str, Any]:
        """Selected properties of one object (one round trip); {} when vCenter returns
        nothing for it. Raises ``NotFound`` when it is gone."""
        return self.get_many(what, [obj], paths).get(str(obj._moId), {})

    def get_many(self, what: str, objs: Sequence[Any], paths: Sequence[str]
                 ) -> dict[str, dict[str, Any]]:
        """Selected properties of several objects of one type in one round trip, by
        managed object id. Read-only. Raises ``NotFound`` when any of them is gone
        (vCenter fails the whole read then)."""
        vmodl = sdk.vmodl()

        def run(si: ServiceInstance) -> dict[str, dict[str, Any]]:
            collector = vmodl.query.PropertyCollector
            spec = collector.FilterSpec(
                objectSet=[collector.ObjectSpec(obj=obj) for obj in objs],
                propSet=[collector.PropertySpec(type=type(objs[0]), pathSet=list(paths))],
            )
            pc = si.content.propertyCollector
            found: dict[str, dict[str, Any]] = {}
            result = pc.RetrievePropertiesEx([spec], collector.RetrieveOptions())
            while result is not None:
                for item in result.objects or ():
                    found[str(item.obj._moId)] = {p.name: p.val for p in item.propSet or ()}
                if not result.token:
                    break
                result = pc.ContinueRetrievePropertiesEx(result.token)
            return found

        return self.read(what, run) if objs else {}

    # -- tasks --------------------------------------------------------------

    def task(self, moid: str) -> Any:
        """The ``vim.Task`` with this managed object id, bound to the current session."""
        vim = sdk.vim()

        return vim.Task(moid, self._session()._stub)

    def task_done(self, moid: str, what: str) -> Any | None:
        """The task's result once it succeeded, None while it runs.

        Raises the translated fault when it failed, ``NotFound`` when vCenter no
        longer knows the task (it forgets finished tasks after a while).
        """
        return task_outcome(self.read(f"read task of {what}", lambda si: self.task(moid).info),
                            what)

    def next_task_look(self, waited: float) -> float:
        """Seconds until a running task is looked at again, ``waited`` seconds after
        its step began: :data:`FIRST_TASK_POLL` at first, then half the time waited
        so far, up to ``poll_interval``. Pure."""
        return min(self.config.poll_interval, max(FIRST_TASK_POLL, waited / 2))

    def wait_task(self, task: Any, what: str, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> Any:
        """Block until a short task (snapshot, mark as template) ends; return its result.

        Raises the translated fault, or ``StepTimeout`` after ``task_timeout``.
        """
        deadline = clock() + self.config.task_timeout
        while True:
            result = self.task_done(task._moId, what)
            if result is not None:
                return result
            if clock() > deadline:
                raise StepTimeout(f"{what}: task still running after "
                                  f"{self.config.task_timeout:.0f}s")
            sleep(min(self.config.poll_interval, 0.2))

    # -- uploads ------------------------------------------------------------

    def upload(self, url: str, stream: IO[bytes], size: int,
               progress: Callable[[int], None]) -> None:
        """POST ``size`` bytes of ``stream`` to an NFC lease device URL.

        Raises ``Transient`` on network errors or a non-2xx answer, ``AuthError``
        when the pinned certificate does not match.
        """
        # "*" stands for the host (and port) the client reached vCenter at.
        netloc = self.host if self.port == 443 else f"{self.host}:{self.port}"
        parts = urlsplit(url.replace("://*", f"://{netloc}", 1))
        host, port = parts.hostname or self.host, parts.port or 443
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        what = "upload a disk to vCenter"
        connection = http.client.HTTPSConnection(host, port, context=self.context,
                                                 timeout=self.config.timeout)
        try:
            connection.connect()  # the context enforces a pinned thumbprint
            connection.putrequest("POST", target)
            connection.putheader("Content-Type", "application/x-vnd.vmware-streamVmdk")
            connection.putheader("Content-Length", str(size))
            connection.putheader("Cookie", self.cookie)
            connection.endheaders()
            done = 0
            while chunk := stream.read(UPLOAD_CHUNK):
                connection.send(chunk)
                done += len(chunk)
                progress(done)
            response = connection.getresponse()
            response.read()
            if response.status >= 300:
                raise translate(OSError(f"HTTP {response.status}"), what,
                                endpoint=f"https://{host}:{port}")
        except ProviderError:
            raise
        except Exception as exc:
            raise translate(exc, what, endpoint=f"https://{host}:{port}",
                            trust=self.config.trust) from None
        finally:
            connection.close()


def task_outcome(info: Any, what: str) -> Any | None:
    """What ``VSphereClient.task_done`` makes of a task's ``info``: its result (True
    when it has none) once it succeeded, None while it runs; raises the translated
    fault when it failed. Pure."""
    state = str(info.state)
    if state in ("queued", "running"):
        return None
    if state == "error":
        raise task_error(info, what)
    return info.result if info.result is not None else True


def _retrieve(
    si: ServiceInstance, obj_type: type, paths: Sequence[str], root: Any
) -> list[tuple[Any, dict[str, Any]]]:
    content = si.content
    root = root or content.rootFolder
    if not isinstance(si, Session):  # a bare service instance: a view for this call only
        view = content.viewManager.CreateContainerView(root, [obj_type], True)
        try:
            return _collect(content, view, obj_type, paths)
        finally:
            view.Destroy()
    view = si.container_view(root, obj_type)
    try:
        return _collect(content, view, obj_type, paths)
    except Exception as exc:
        if not is_fault(exc, "ManagedObjectNotFound"):
            raise
    # The view is gone (destroyed by someone, or its root was removed): once more.
    si.forget_view(view)
    return _collect(content, si.container_view(root, obj_type), obj_type, paths)


def _collect(content: Any, view: Any, obj_type: type, paths: Sequence[str]
             ) -> list[tuple[Any, dict[str, Any]]]:
    """(object, {path: value}) for every object of ``view``: one RetrievePropertiesEx
    (plus continuations for large inventories)."""
    vmodl = sdk.vmodl()

    collector = vmodl.query.PropertyCollector
    spec = collector.FilterSpec(
        objectSet=[collector.ObjectSpec(
            obj=view, skip=True,
            selectSet=[collector.TraversalSpec(name="view", path="view", skip=False,
                                               type=type(view))],
        )],
        propSet=[collector.PropertySpec(type=obj_type, pathSet=list(paths))],
    )
    return _results(content.propertyCollector, spec, 500)


def _results(pc: Any, spec: Any, most: int) -> list[tuple[Any, dict[str, Any]]]:
    """(object, {path: value}) of everything ``spec`` selects: one
    RetrievePropertiesEx of at most ``most`` objects, then continuations."""
    vmodl = sdk.vmodl()

    found = []
    options = vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=most)
    result = pc.RetrievePropertiesEx([spec], options)
    while result is not None:
        found += [(item.obj, {p.name: p.val for p in item.propSet or ()})
                  for item in result.objects or ()]
        if not result.token:
            break
        result = pc.ContinueRetrievePropertiesEx(result.token)
    return found
