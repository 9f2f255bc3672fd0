"""Server time of the status page over 10,000 requests, against the JSON API in the same run.

    python bench/ui_overview.py [--requests 10000] [--repeat 15]

Builds the service in process (the file-backed test provider, an SQLite store in
a temporary directory, no workers), records N requests spread over providers,
stages, clusters and labels, signs in once, then times each page with the
service's own ASGI stack (Starlette's TestClient: no network, so what is timed
is the server's work). Baselines in the same run:

* ``GET /v1/machine-requests`` — the JSON list of the same N requests (the
  "same data" an API client would read to draw an overview itself);
* ``GET /v1/machine-requests?limit=50`` — one JSON page, the size of one
  table page of ``/ui/requests``;
* ``GET /healthz`` — routing and one trivial store read (the floor).

It also times ``/ui/changes`` with nothing changed and with 10 changed
requests: a live update must cost what changed, not N. Printed: median and p90
per page, and ratios to the baselines. The goal is an overview under 300 ms.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from talprov.cli.app import App  # noqa: E402
from talprov.providers.types import MachineRequest, Stage  # noqa: E402
from talprov.service.app import create_app  # noqa: E402
from talprov.service.config import ServiceConfig  # noqa: E402
from talprov.store.store import Store  # noqa: E402
from tests.helpers import write_plugin_dist  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROVIDERS = ("fake-a", "fake-b", "fake-c")
STAGES = (Stage.PENDING, Stage.PROVISIONING, Stage.PROVISIONED, Stage.FAILED)


def seed(store: Store, count: int) -> None:
    """``count`` requests over three instances, four stages, 20 clusters; every
    tenth failed one carries an error."""
    started = datetime.now(UTC) - timedelta(hours=1)
    for n in range(count):
        provider = PROVIDERS[n % len(PROVIDERS)]
        labels = {"role": "worker", "team": f"team-{n % 7}",
                  "talprov.cluster": f"c-{n % 20}", "talprov.set": "workers"}
        request = MachineRequest(id=f"req-{n:05d}", provider=provider,
                                 talos_version="v1.11.5", labels=labels)
        record = store.create_request(request, now=started + timedelta(milliseconds=n))
        stage = STAGES[n % len(STAGES)]
        if stage is Stage.PENDING:
            continue
        store.save_progress(
            request.id, expected_version=record.version, stage=stage, step_index=1,
            step_name="wait-running" if stage is Stage.PROVISIONING else None, state={},
            error="ensure-machine: no capacity in fake zone" if stage is Stage.FAILED else None,
            attempts=0, next_attempt_at=None, step_started_at=None,
            infra_id=f"fm-{n:08x}", machine_uuid=None, addresses=("192.0.2.10",),
            events=["provisioning started"], now=started + timedelta(milliseconds=n + 1),
        )


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    call()  # warm up (template compilation, first query plans)
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return samples


def line(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    median = statistics.median(samples) * 1000
    return f"{name:44} median {median:8.1f} ms   p90 {p90 * 1000:8.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="talprov-ui-bench-") as tmp:
        root = Path(tmp)
        sys.path.insert(0, str(write_plugin_dist(root / "plugins")))
        config = root / "talprov.yaml"
        config.write_text(yaml.safe_dump({
            "store": f"sqlite:///{root / 'state.db'}", "cache_dir": str(root / "cache"),
            "providers": {name: {"type": "file", "path": str(root / f"{name}.sqlite")}
                          for name in PROVIDERS},
        }))
        app_state = App(config_path=str(config), store_url=None)
        began = time.perf_counter()
        seed(app_state.store, args.requests)
        print(f"seeded {args.requests} requests in {time.perf_counter() - began:.1f} s")
        service = ServiceConfig.model_validate({
            "tokens": [{"name": "bench", "value": TOKEN, "providers": ["*"], "access": "read"}],
            "workers": False,
        })
        app = create_app(app_state.store, app_state.all_handles(), app_state.runtime, service)
        with TestClient(app) as client:
            form = client.get("/ui/sign-in").text
            match = re.search(r'name="csrf" value="([^"]+)"', form)
            assert match is not None
            signed = client.post("/ui/sign-in", data={"csrf": match.group(1), "token": TOKEN},
                                 follow_redirects=False)
            assert signed.status_code == 303

            def get(url: str, **kwargs: object) -> Callable[[], object]:
                def call() -> object:
                    response = client.get(url, **kwargs)
                    assert response.status_code == 200, (url, response.status_code)
                    return response
                return call

            overview = get("/ui")
            assert "Provider instances" in overview().text  # type: ignore[attr-defined]
            now = datetime.now(UTC).isoformat()
            results = {
                "GET /healthz (floor)": timed(get("/healthz"), args.repeat),
                "GET /v1/machine-requests (all, JSON)": timed(
                    get("/v1/machine-requests", headers=AUTH), max(3, args.repeat // 5)),
                "GET /v1/machine-requests?limit=50 (JSON)": timed(
                    get("/v1/machine-requests?limit=50", headers=AUTH), args.repeat),
                "GET /ui (overview)": timed(overview, args.repeat),
                "GET /ui/requests (page 1 of all)": timed(get("/ui/requests"), args.repeat),
                "GET /ui/requests?label=team=team-3": timed(
                    get("/ui/requests?label=team%3Dteam-3&page=3"), args.repeat),
                "GET /ui/requests/req-04242": timed(get("/ui/requests/req-04242"), args.repeat),
                "GET /ui/changes (nothing changed)": timed(
                    get("/ui/changes", params={"since": now}), args.repeat),
            }
            store = app_state.store
            for n in range(10):
                store.mark_for_deletion(f"req-{n * 997:05d}")
            results["GET /ui/changes (10 changed)"] = timed(
                get("/ui/changes", params={"since": now}), args.repeat)
        app_state.close()
    for name, samples in results.items():
        print(line(name, samples))
    median = {name: statistics.median(samples) for name, samples in results.items()}
    ui = median["GET /ui (overview)"]
    full = median["GET /v1/machine-requests (all, JSON)"]
    page = median["GET /v1/machine-requests?limit=50 (JSON)"]
    print(f"overview / full JSON list: {ui / full:.3f}")
    print(f"overview / one JSON page:  {ui / page:.2f}")
    print(f"overview / healthz floor:  {ui / median['GET /healthz (floor)']:.1f}")
    changes_ratio = (median["GET /ui/changes (10 changed)"]
                     / median["GET /ui/changes (nothing changed)"])
    print(f"changes(10) / changes(0):  {changes_ratio:.2f}")
    print(f"overview under 300 ms: {'yes' if ui < 0.3 else 'NO'} ({ui * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
