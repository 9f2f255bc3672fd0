"""A typo in a size must not launch thousands of machines (QA: `talprov scale
example workers 100000` recorded 99,999 requests at once, `set scale pool 1001`
went past the API's own limit, and a control plane could be scaled to 0)."""

from __future__ import annotations

import json

from tests.helpers import Home
from tests.unit.test_cli import assert_usage_error
from tests.unit.test_cli_retry_sets_watch import record_request_set
from tests.unit.test_cluster_apply import write_spec


def _requests(home: Home) -> int:
    return len(json.loads(home.invoke("machine", "list", "-o", "json").output))


def test_scaling_a_set_up_by_many_needs_yes(home: Home) -> None:
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                     control_planes=1))).exit_code == 0
    before = _requests(home)
    refused = home.invoke("scale", "demo", "workers", "100000")
    assert_usage_error(refused.exit_code, refused.output, "Add 99999 machines", "--yes")
    assert _requests(home) == before
    # A small change does not ask.
    assert home.invoke("scale", "demo", "workers", "3").exit_code == 0
    assert home.invoke("scale", "demo", "workers", "60", "--yes").exit_code == 0


def test_a_control_plane_cannot_be_scaled_to_zero(home: Home) -> None:
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                     control_planes=1))).exit_code == 0
    refused = home.invoke("scale", "demo", "control-planes", "0")
    assert_usage_error(refused.exit_code, refused.output, "a control plane needs >= 1 machine")


def test_set_scale_keeps_the_apis_limit_and_asks_for_large_growth(home: Home) -> None:
    record_request_set(home, "pool", 1)
    too_many = home.invoke("set", "scale", "pool", "1001")
    assert too_many.exit_code == 2
    assert "1000" in too_many.output
    refused = home.invoke("set", "scale", "pool", "200")
    assert_usage_error(refused.exit_code, refused.output, "Add 199 machines", "--yes")
    done = home.invoke("set", "scale", "pool", "200", "--yes")
    assert done.exit_code == 0, done.output
    # A count and the first names, not 199 names on one line.
    assert "created 199 members (pool-1, pool-2, pool-3, pool-4, pool-5, ...)" in done.output
