"""`talprov serve` without -v logs one line per stage change of a request, nothing noisier."""

from __future__ import annotations

import re

import httpx

from tests.helpers import WORKER_CONFIG, Home
from tests.unit.service.conftest import TOKENS, WRITE, request_body
from tests.unit.service.serving import ServeProcess, wait_until


def test_serve_logs_each_stage_change_at_info_without_v(home: Home) -> None:
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.1})
    server = ServeProcess(home.env(), home.root)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            body = request_body("logged-1", config=WORKER_CONFIG)
            assert client.post("/v1/machine-requests", json=body,
                               headers=WRITE).status_code == 201
            wait_until(lambda: "provisioning -> provisioned" in server.output(), 30,
                       "the provisioned line")
    finally:
        server.terminate()
    lines = [line for line in server.output().splitlines() if "logged-1" in line]
    changes = [line for line in lines if " -> " in line]
    assert any(re.search(r"INFO .*request logged-1 \(fake\): pending -> provisioning, step \S+, "
                         r"[\d.]+s since recorded", line) for line in changes), lines
    assert any("provisioning -> provisioned" in line for line in changes), lines
    # The per-event lines (step done, attempts) stay behind -v.
    assert lines == changes, lines
