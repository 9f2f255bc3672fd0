"""Real worker processes SIGKILLed at several moments of a multi-machine create.

After every kill a fresh worker resumes; whatever moment the kill hit (before a
create call, between the call and the state write, while waiting), the platform
must end with exactly one machine per request.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from talprov.providers.types import MachineRequest, Stage
from talprov.store.store import Store
from tests.contract.environments import PROCESS_ENVIRONMENTS, Environment
from tests.emulators.factory import FakeImageFactory
from tests.killing import reconcile_command, run_then_kill, worker_env

KILL_AFTER = (1.0, 1.4, 1.8, 2.3, 3.0)
COUNT = 6


@pytest.mark.parametrize("env", PROCESS_ENVIRONMENTS, indirect=True)
def test_sigkill_at_several_points_then_restart(
    env: Environment, tmp_path: Path, plugin_dir: Path, image_factory: FakeImageFactory
) -> None:
    store_url = f"sqlite:///{tmp_path / 'crash.db'}"
    config = tmp_path / "talprov.yaml"
    config.write_text(yaml.safe_dump({
        "store": store_url,
        "installation": env.runtime.installation,
        "cache_dir": str(tmp_path / "cache"),
        "image_factory": {"url": image_factory.url},
        "providers": {"contract": {"type": env.type_name, **env.config}},
    }))
    store = Store(store_url)
    store.migrate()
    for i in range(COUNT):
        store.create_request(MachineRequest(
            id=f"k-{i}", provider="contract", talos_version=env.talos_version,
            machine_config=SecretStr("version: v1alpha1\nmachine: {type: worker}\n"),
            labels=dict(env.labels), provider_data=dict(env.provider_data),
        ))
    proc_env = worker_env(config, plugin_dir)
    command = reconcile_command()
    for delay in KILL_AFTER:
        run_then_kill(proc_env, delay)
        assert env.platform_machines() <= COUNT

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        subprocess.run([*command[:-2], "--once"], env=proc_env, capture_output=True,
                       timeout=120, check=False)
        stages = {r.stage for r in store.list_requests()}
        if stages == {Stage.PROVISIONED}:
            break
    records = store.list_requests()
    assert {r.stage for r in records} == {Stage.PROVISIONED}, json.dumps(
        [(r.request.id, r.stage, r.error) for r in records])
    assert env.platform_machines() == COUNT
    assert len({r.infra_id for r in records}) == COUNT
