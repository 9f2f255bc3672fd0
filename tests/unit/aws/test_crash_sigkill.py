"""A real SIGKILL of the worker at chosen moments of a 10-machine create, then a restart.

Whatever the kill point, moto ends up with exactly one instance per request and
every request's state names that instance.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import boto3
import pytest

from talprov.aws.members import request_of
from talprov.providers.ownership import INSTALLATION_KEY
from tests.emulators.moto import REGION, MotoServer
from tests.unit.aws.crash_worker import requests

ROOT = Path(__file__).resolve().parents[3]


def _run_worker(
    state: Path, server: MotoServer, kill: str = ""
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tests.unit.aws.crash_worker", str(state), server.url]
    if kill:
        argv.append(kill)
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)


def _owned_live_instances(server: MotoServer) -> list[dict[str, str]]:
    """Every live instance with an installation tag, and its request as the tags say.

    The request is read from the instance's own tags (request tag, else its batch's
    member list and launch index) through ``request_of``, the one mapping rule
    ``list_machines`` also uses.
    """
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=server.url)
    out = []
    for reservation in ec2.describe_instances()["Reservations"]:
        for raw in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
            if raw["State"]["Name"] != "terminated" and tags.get(INSTALLATION_KEY):
                rid = request_of(tags, int(raw.get("AmiLaunchIndex", 0)))
                out.append({"id": raw["InstanceId"], "request": rid or "?"})
    return out


KILL_CHAINS = {
    # Kill points, in the order the restarted workers hit them.
    "after-batch-launch": ["RunInstances:1"],
    # The look right after the launches (nothing about it saved yet).
    "after-first-look": ["DescribeInstances:2"],
    "after-lookup-then-launch": ["DescribeInstances:2", "RunInstances:1"],
    "launches-twice-then-looks": ["RunInstances:2", "RunInstances:1", "DescribeInstances:2"],
    "late": ["RunInstances:5", "DescribeInstances:3"],
}
FAST = {"after-batch-launch", "launches-twice-then-looks"}


@pytest.mark.parametrize("chain", [
    pytest.param(name, marks=() if name in FAST else pytest.mark.slow) for name in KILL_CHAINS
])
def test_sigkill_during_create_then_restart_gives_exactly_ten(
    moto_server: MotoServer, tmp_path: Path, chain: str
) -> None:
    state = tmp_path / "state.json"
    kills = 0
    for kill in KILL_CHAINS[chain]:
        result = _run_worker(state, moto_server, kill)
        if result.returncode == -signal.SIGKILL:
            kills += 1
        else:
            assert result.returncode == 0, result.stderr[-2000:]
    assert kills >= 1  # at least one kill point was actually reached

    result = _run_worker(state, moto_server)
    assert result.returncode == 0, result.stderr[-2000:]

    wanted = sorted(r.id for r in requests())
    instances = _owned_live_instances(moto_server)
    assert len(instances) == len(wanted)
    assert Counter(i["request"] for i in instances) == Counter(wanted)
    saved = json.loads(state.read_text())
    by_request = {i["request"]: i["id"] for i in instances}
    for rid in wanted:
        assert saved[rid]["step"] == 3
        assert saved[rid]["state"]["infra_id"] == by_request[rid]
