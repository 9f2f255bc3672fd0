"""Run fakepve as its own server process, with a small control endpoint beside it.

Started by :func:`talprov.demo_platforms.fakepve_control.start_fakepve` (the tests'
fixture and the pytest plugin) as ``python -I fakepve_launcher.py GUESTS.json --cert-dir
DIR`` (``-I`` keeps talprov's folders off ``sys.path``, so only fakepve and aiohttp are
imported); never imported by a test process. fakepve's fault injection
(``fail``, ``revoke_tickets``, ``migrate``, ...) exists only as Python methods of the
server object, so this script serves a plain-HTTP control API on 127.0.0.1 that calls
them. It adds two things fakepve lacks: failures *after* a request was handled (the
VM exists, the client still sees an error: ``fail_after``), ``reset`` (back to the
state recorded by ``snapshot``, so one server can serve a whole test session) and
``set_timing``: real time (``time_scale``) and task durations (``task_secs``: fakepve's
creates, clones and starts otherwise end the moment they begin, which real PVE's never
do), used by ``bench/proxmox_create.py`` together with fakepve's ``slow_network``.
It prints two lines the fixture reads::

    fakepve listening on https://127.0.0.1:PORT
    control listening on http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from fakepve import FakePve  # type: ignore[import-untyped]
from fakepve.certs import make_cert  # type: ignore[import-untyped]
from fakepve.server import error as pve_error  # type: ignore[import-untyped]


class RecordingPve(FakePve):  # type: ignore[misc]
    """fakepve that keeps every uploaded file's bytes, so tests can read them back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uploads: dict[str, dict[str, bytes]] = {}
        #: Rules of fail_after: method, path suffix (fakepve's own matching), status,
        #: message, times left.
        self.after_failures: list[dict[str, Any]] = []
        self.baseline: dict[str, Any] = {}
        #: Extra PVE seconds a task of this type (``qmcreate``, ``qmstart``, ...) runs.
        self.task_secs: dict[str, float] = {}

    async def task(self, node: str, ttype: str, tid: Any, user: str, body: Any,
                   vm: Any = None, lock: bool = True, log: Any = ()) -> str:
        # The extra time passes inside the task, so the VM holds its lock (and a
        # create's VM its missing config) for that long, as on a real node.
        secs = self.task_secs.get(ttype, 0.0)

        async def delayed() -> Any:
            await self.pause(secs)
            return await body()

        upid: str = await super().task(node, ttype, tid, user, delayed if secs else body,
                                       vm=vm, lock=lock, log=log)
        return upid

    def set_timing(self, time_scale: float, task_secs: dict[str, float]) -> None:
        """Real seconds per PVE second (0: tasks end before the answer) and task durations."""
        self.time_scale = time_scale
        self.task_secs = dict(task_secs)

    async def _answer(self, request: web.Request, handler: Any, generic: Any,
                      path_node: Any) -> web.StreamResponse:
        # fakepve acts first (with time_scale 0 its tasks are done by now); then a
        # matching fail_after rule replaces the answer the client gets.
        response: web.StreamResponse = await super()._answer(request, handler, generic,
                                                             path_node)
        for rule in list(self.after_failures):
            if rule["method"] == request.method and self._failure_matches(
                    request, generic, rule["suffix"]):
                rule["times"] -= 1
                if rule["times"] <= 0:
                    self.after_failures.remove(rule)
                failed: web.StreamResponse = pve_error(rule["status"], rule["message"])
                return failed
        return response

    def snapshot(self) -> None:
        """Remember storages and uploads as they are now; ``reset`` returns to them."""
        self.baseline = {"storages": copy.deepcopy(self.storages),
                         "uploads": copy.deepcopy(self.uploads)}

    def reset(self) -> None:
        """Remove every guest, task, pool and failure; storages back to the snapshot."""
        self.vms.clear()
        getattr(self, "cts", []).clear()
        self.failures.clear()
        self.after_failures.clear()
        self.tasks.clear()
        self.tasklog.clear()
        self.requests.clear()
        self.pools.clear()
        self.pool_info.clear()
        if self.baseline:
            self.storages = copy.deepcopy(self.baseline["storages"])
            self.uploads = copy.deepcopy(self.baseline["uploads"])

    def clear_failures(self) -> None:
        """Drop every failure rule, before and after ones."""
        self.failures.clear()
        self.after_failures.clear()

    def pending_failures(self) -> list[dict[str, Any]]:
        """The failure rules not used up yet: method, suffix, after, times left."""
        before = [{"method": method, "suffix": suffix, "after": False, "times": rule["times"]}
                  for (method, suffix), rule in self.failures.items()]
        after = [{"method": r["method"], "suffix": r["suffix"], "after": True,
                  "times": r["times"]} for r in self.after_failures]
        return before + after

    def fail_after(self, method: str, suffix: str, status: int = 500,
                   message: str = "injected by the test", times: int = 1) -> None:
        """Handle the next ``times`` matching requests, then answer them with an error."""
        self.after_failures.append({"method": method, "suffix": suffix, "status": status,
                                    "message": message, "times": times})

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await super()._upload(request)
        fields = self.uploaded or {}
        if fields.get("filename") is not None:
            storage = request.match_info["storage"]
            self.uploads.setdefault(storage, {})[fields["filename"]] = fields.get("data", b"")
        return response


def _vm_view(pve: RecordingPve) -> list[dict[str, Any]]:
    return [
        {"vmid": vm.vmid, "name": vm.name, "node": vm.node, "status": vm.status,
         "config": dict(vm.config)}
        for vm in pve.vms
    ]


def _storage_view(pve: RecordingPve) -> dict[str, Any]:
    return {
        name: {"files": sorted(store.get("files", ())),
               "volumes": sorted(store.get("volumes", {}))}
        for name, store in pve.storages.items()
    }


def _uploads_view(pve: RecordingPve) -> dict[str, dict[str, str]]:
    return {
        storage: {name: base64.b64encode(data).decode() for name, data in files.items()}
        for storage, files in pve.uploads.items()
    }


def _set_vm(pve: RecordingPve, vmid: int, attrs: dict[str, Any]) -> None:
    vm = pve.vm(int(vmid))
    for key, value in attrs.items():
        setattr(vm, key, value)


def _add_vm(pve: RecordingPve, vmid: int, name: str, node: str = "pve1",
            config: dict[str, Any] | None = None) -> int:
    return int(pve.add_vm(vmid, name, node=node, config=config or {}).vmid)


def _add_token(pve: RecordingPve, tokenid: str, secret: str) -> None:
    pve.apitokens[tokenid] = secret


async def _control(pve: RecordingPve, body: dict[str, Any]) -> Any:
    """One control command; most are fakepve's own scenario methods by name."""
    op = body["op"]
    args: dict[str, Any] = body.get("args", {})
    plain: dict[str, Callable[..., Any]] = {
        "fail": pve.fail,
        "fail_after": pve.fail_after,
        "clear_failures": pve.clear_failures,
        "pending_failures": pve.pending_failures,
        "snapshot": pve.snapshot,
        "reset": pve.reset,
        "revoke_tickets": pve.revoke_tickets,
        "slow_network": pve.slow_network,
        "set_timing": pve.set_timing,
        "add_file": pve.store_file,
        "add_token": lambda tokenid, secret: _add_token(pve, tokenid, secret),
        "add_node": pve.add_node,
        "grant": lambda user, path, privs: pve.grant(user, path, *privs),
        "add_vm": lambda **kw: _add_vm(pve, **kw),
        "set_vm": lambda vmid, attrs: _set_vm(pve, vmid, attrs),
        "set_storage": lambda name, values: pve.storages[name].update(values),
        "vms": lambda: _vm_view(pve),
        "storages": lambda: _storage_view(pve),
        "uploads": lambda: _uploads_view(pve),
        "requests": lambda: [[method, path] for method, path, _body in pve.requests],
        "tasks": lambda: [dict(task) for task in pve.tasklog],
    }
    if op == "migrate":
        return await pve.migrate(args["vmid"], args["target"], secs=0)
    if op not in plain:
        raise web.HTTPBadRequest(text=f"unknown op {op!r}")
    return plain[op](**args)


def _control_app(pve: RecordingPve) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        result = await _control(pve, await request.json())
        return web.json_response({"result": result})

    app = web.Application()
    app.router.add_post("/control", handle)
    return app


async def _serve(args: argparse.Namespace) -> None:
    pve = RecordingPve(user=args.user, password=args.password, host="127.0.0.1", port=0)
    pve.time_scale = 0
    guests = json.loads(Path(args.guests).read_text())["guests"]
    for guest in guests:
        pve.add_vm(guest["vmid"], guest["name"], node=guest.get("node", "pve1"),
                   status=guest.get("status", "stopped"), config=guest.get("config", {}))
    cert_dir = Path(args.cert_dir)
    certfile, keyfile, _der = make_cert(str(cert_dir), hosts=("127.0.0.1",))
    await pve.start(certfile, keyfile)
    runner = web.AppRunner(_control_app(pve))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    control_port = runner.addresses[0][1]
    print(f"fakepve listening on {pve.url}", flush=True)
    print(f"control listening on http://127.0.0.1:{control_port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("guests")
    parser.add_argument("--cert-dir", required=True)
    parser.add_argument("--user", default="root@pam")
    parser.add_argument("--password", default=os.environ.get("FAKEPVE_PASSWORD", "secret"))
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
