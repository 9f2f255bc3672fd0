"""A worker process for the SIGKILL tests: provisions requests, persisting after each step.

``python -m tests.unit.aws.crash_worker STATE.json ENDPOINT [KILL]``

It drives the AWS provider through the local loop and writes every request's
step and state to STATE.json (atomically) after each step, as the store would.
With ``KILL`` = ``Operation:N`` it SIGKILLs itself the moment the N-th reply to
that EC2 operation arrives, i.e. after the cloud acted and before any state
about it was written.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from talprov.aws.config import AwsConfig
from talprov.aws.provider import AwsProvider
from talprov.providers.protocol import Runtime
from talprov.testing import FakeClock
from tests.emulators.moto import REGION
from tests.unit.aws.helpers import WORKER_CONFIG, make_request
from tests.unit.aws.loop import LocalLoop, Tracked

BATCHED = 6
SINGLES = 4


def requests() -> list[Any]:
    """Ten requests: six that share a config (one batch) and four with their own."""
    out = [make_request(f"w-{i}") for i in range(BATCHED)]
    out += [make_request(f"cp-{i}", config=WORKER_CONFIG + f"# cp {i}\n") for i in range(SINGLES)]
    return out


def _kill_hook(spec: str) -> Any:
    operation, _, nth = spec.partition(":")
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def after_call(event_name: str, **_: Any) -> None:
        name = event_name.rsplit(".", 1)[-1]
        with lock:
            seen[name] += 1
            if name == operation and seen[name] == int(nth or 1):
                os.kill(os.getpid(), signal.SIGKILL)

    return after_call


def main(argv: list[str]) -> int:
    state_path, endpoint = Path(argv[0]), argv[1]
    kill = argv[2] if len(argv) > 2 else ""
    clock = FakeClock()
    runtime = Runtime(installation="talprov-crash", cache_dir=state_path.parent / "cache",
                      clock=clock, sleep=clock.sleep)
    # Unnamed machines, so that identical configs are launched in batches (the crash points).
    provider = AwsProvider("aws-crash", AwsConfig(region=REGION, endpoint_url=endpoint,
                                                  max_attempts=1, name_machines=False), runtime)
    if kill:
        provider.clients.ec2.meta.events.register("after-call.ec2", _kill_hook(kill))
    loop = LocalLoop(provider, runtime, clock)
    saved: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    for request in requests():
        tracked = loop.add(request)
        if request.id in saved:
            tracked.step = saved[request.id]["step"]
            tracked.state = provider.state_model.model_validate(saved[request.id]["state"])

    def persist(_: Tracked) -> None:
        body = {rid: {"step": t.step, "state": t.state.model_dump(mode="json")}
                for rid, t in loop.requests.items()}
        partial = state_path.with_suffix(".partial")
        partial.write_text(json.dumps(body))
        partial.replace(state_path)

    loop.after_persist = persist
    loop.run_until_settled()
    failed = {rid: t.failed for rid, t in loop.requests.items() if t.failed}
    print(json.dumps({"failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
