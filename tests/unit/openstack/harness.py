"""Drives the OpenStack provider's steps the way the request runner does, on a fake clock.

``run`` calls each step until it returns None (sleeping its ``Retry.after`` on
the fake clock), giving it what one ``list_machines`` call observed in that pass,
exactly as the reconciler would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from talprov.openstack.config import OpenStackAuth, OpenStackConfig
from talprov.openstack.data import OpenStackData
from talprov.openstack.provider import OpenStackProvider
from talprov.openstack.state import OpenStackState
from talprov.providers.protocol import Runtime, StepContext
from talprov.providers.types import MachineRequest, Owner, Retry
from talprov.reconcile.runner import run_step
from talprov.testing import FakeClock
from talprov.testing.openstack.wire import Request, Response
from tests.emulators.factory import FakeImageFactory
from tests.emulators.openstack import FakeOpenStack

REPO = Path(__file__).resolve().parents[3]
CONFIG_CANARY = "canary-cluster-secret-7f3a9c"
TALOS_VERSION = "v1.13.9"


def machine_config(name: str) -> str:
    return (
        "version: v1alpha1\n"
        "machine:\n"
        "  type: worker\n"
        f"  token: {CONFIG_CANARY}\n"
        f"  network: {{hostname: {name}}}\n"
        "cluster:\n"
        "  controlPlane: {endpoint: https://10.0.0.10:6443}\n"
    )


class Harness:
    """A provider wired to the fake cloud and factory, plus helpers to run requests."""

    def __init__(self, cloud: FakeOpenStack, factory: FakeImageFactory, tmp: Path,
                 **config: Any) -> None:
        self.cloud = cloud
        self.factory = factory
        self.clock = FakeClock()
        self.progress: list[tuple[str, int, int | None]] = []
        self.runtime = Runtime(installation="test-install", cache_dir=tmp / "cache",
                               factory_url=factory.url, clock=self.clock.time,
                               sleep=self.clock.sleep, progress=self.record_progress)
        self.owner = Owner(installation="test-install", instance="os-test")
        self.config = OpenStackConfig(auth=OpenStackAuth(**cloud.auth()), region="RegionOne",
                                      poll_interval=2.0, **config)
        self.provider = OpenStackProvider("os-test", self.config, self.runtime)
        self.passes = 0

    def record_progress(self, task: str, done: int, total: int | None) -> None:
        self.progress.append((task, done, total))

    def request(self, request_id: str, **data: Any) -> MachineRequest:
        provider_data = {"flavor": "m1.small", "networks": ["private"], **data}
        return MachineRequest(id=request_id, provider="os-test", talos_version=TALOS_VERSION,
                              machine_config=machine_config(request_id), labels={"role": "w"},
                              provider_data=provider_data)

    def context(self, request: MachineRequest,
                state: OpenStackState | None = None) -> StepContext[OpenStackData, OpenStackState]:
        return StepContext(request=request,
                           data=OpenStackData.model_validate(request.provider_data),
                           state=state or OpenStackState(), owner=self.owner,
                           runtime=self.runtime)

    def observe(self, ctx: StepContext[OpenStackData, OpenStackState]) -> None:
        machines = self.provider.list_machines(self.owner)
        ctx.observed = next((m for m in machines if m.request_id == ctx.request.id), None)

    def run_step(self, name: str, ctx: StepContext[OpenStackData, OpenStackState],
                 limit: int = 50) -> int:
        """Run one named step until it is done; returns how many Retry it answered."""
        step = next(s for s in self.provider.steps() if s.name == name)
        ctx.step_started_at = self.clock.now
        for retries in range(limit):
            self.observe(ctx)
            result = run_step(step, ctx)
            if result is None:
                return retries
            assert isinstance(result, Retry)
            self.clock.sleep(result.after)
        raise AssertionError(f"step {name} did not finish in {limit} passes")

    def provision(self, request: MachineRequest,
                  state: OpenStackState | None = None) -> StepContext[OpenStackData,
                                                                      OpenStackState]:
        ctx = self.context(request, state)
        for step in self.provider.steps():
            self.run_step(step.name, ctx)
        return ctx

    def deprovision(self, ctx: StepContext[OpenStackData, OpenStackState],
                    limit: int = 20) -> None:
        for _ in range(limit):
            result = self.provider.deprovision(ctx)
            if result is None:
                return
            self.clock.sleep(result.after)
        raise AssertionError("deprovision did not finish")

    def kill_worker(self, tmp: Path, job: dict[str, Any], path: str, status: int) -> None:
        """Run ``tests.unit.openstack.crash_child`` on ``job`` (its ``request`` or
        its ``store``) and SIGKILL it once the cloud answered a POST to ``path``
        with ``status``, before the answer reaches it. Asserts that it died so."""
        spec = tmp / "spec.json"
        spec.write_text(json.dumps({
            "installation": self.owner.installation,
            "owner": {"installation": self.owner.installation, "instance": self.owner.instance},
            "cache_dir": str(self.runtime.cache_dir),
            "factory_url": self.factory.url,
            "config": {**self.config.model_dump(mode="json"), "auth": self.cloud.auth()},
            **job,
        }))
        child = subprocess.Popen([sys.executable, "-m", "tests.unit.openstack.crash_child",
                                  str(spec)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                 stderr=subprocess.PIPE, text=True)
        killed = threading.Event()

        def kill_before_the_reply(req: Request, response: Response) -> None:
            if response.status == status and not killed.is_set():
                # Set first: the main thread's wait() returns the moment the child
                # dies, possibly before this thread runs another line.
                killed.set()
                child.send_signal(signal.SIGKILL)
                child.wait(timeout=10)

        self.cloud.after("POST", path, kill_before_the_reply)
        try:
            _, errors = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
        assert killed.is_set(), f"the worker exited ({child.returncode}) first: {errors}"
        assert child.returncode == -signal.SIGKILL
