"""A typo in a size must not launch thousands of machines (QA: `talprov scale
example workers 100000` recorded 99,999 requests at once, `set scale pool 1001`
went past the API's own limit, and a control plane could be scaled to 0)."""

from __future__ import annotations

import json
import re

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
    refused = home.invoke("scale", "demo", "workers", "900")
    assert_usage_error(refused.exit_code, refused.output,
                       "not asking whether to add 899 machines", "--yes")
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
    assert_usage_error(refused.exit_code, refused.output,
                       "not asking whether to add 199 machines", "--yes")
    done = home.invoke("set", "scale", "pool", "200", "--yes")
    assert done.exit_code == 0, done.output
    # A count and the first names, not 199 names on one line.
    assert "created 199 members (pool-1, pool-2, pool-3, pool-4, pool-5, ...)" in done.output


def test_scale_keeps_the_same_limit_as_set_scale(home: Home) -> None:
    """QA: `scale demo workers 5000 --yes` recorded 5000 machines; `set scale` stops at
    the API's 1000. Both refuse more, naming the limit, before anything is recorded."""
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                     control_planes=1))).exit_code == 0
    before = _requests(home)
    refused = home.invoke("scale", "demo", "workers", "1001", "--yes")
    assert_usage_error(refused.exit_code, refused.output, "COUNT", "at most 1000")
    assert _requests(home) == before
    # A spec file is held to the same limit.
    big = write_spec(home.root, workers=1001, control_planes=1)
    refused = home.invoke("apply", "-f", str(big))
    assert_usage_error(refused.exit_code, refused.output, "size", "1000")


def test_a_negative_count_is_named_as_such(home: Home) -> None:
    """QA: `scale demo workers -1` said "No such option: -1"."""
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                     control_planes=1))).exit_code == 0
    refused = home.invoke("scale", "demo", "workers", "-1")
    assert_usage_error(refused.exit_code, refused.output, "COUNT", "count must be 0 or more")
    record_request_set(home, "pool", 1)
    refused = home.invoke("set", "scale", "pool", "-1")
    assert_usage_error(refused.exit_code, refused.output, "COUNT", "count must be 0 or more")


def test_shrinking_a_control_plane_asks_and_says_why(home: Home) -> None:
    """QA: `scale demo control-planes 1` on a control plane of 3 went ahead unasked."""
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                     control_planes=3))).exit_code == 0
    refused = home.invoke("scale", "demo", "control-planes", "1")
    assert_usage_error(refused.exit_code, refused.output, "control plane", "3 -> 1",
                       "etcd", "--yes")
    status = json.loads(home.invoke("status", "demo", "-o", "json").output)
    assert {s["name"]: s["desired"] for s in status["sets"]}["control-planes"] == 3
    done = home.invoke("scale", "demo", "control-planes", "1", "--yes")
    assert done.exit_code == 0, done.output
    status = json.loads(home.invoke("status", "demo", "-o", "json").output)
    assert {s["name"]: s["desired"] for s in status["sets"]}["control-planes"] == 1
    # Growing a control plane, and shrinking workers, do not ask.
    assert home.invoke("scale", "demo", "control-planes", "3").exit_code == 0
    assert home.invoke("scale", "demo", "workers", "0").exit_code == 0


def test_applying_a_spec_with_a_smaller_control_plane_asks_too(home: Home) -> None:
    """The same shrink through a spec file (3 -> 1 in controlplane size) asks, as
    `scale` does; the first apply of a cluster has nothing to shrink."""
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                     control_planes=3))).exit_code == 0
    smaller = write_spec(home.root, workers=1, control_planes=1)
    refused = home.invoke("apply", "-f", str(smaller))
    assert_usage_error(refused.exit_code, refused.output, "3 -> 1", "etcd", "--yes")
    status = json.loads(home.invoke("status", "demo", "-o", "json").output)
    assert {s["name"]: s["desired"] for s in status["sets"]}["control-planes"] == 3
    assert home.invoke("apply", "-f", str(smaller), "--yes").exit_code == 0
    status = json.loads(home.invoke("status", "demo", "-o", "json").output)
    assert {s["name"]: s["desired"] for s in status["sets"]}["control-planes"] == 1


def test_every_confirming_command_takes_y_as_destroy_does(home: Home) -> None:
    """QA: `destroy` took -y, but `scale`, `apply` and `set scale` only --yes."""
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                     control_planes=1))).exit_code == 0
    assert home.invoke("scale", "demo", "workers", "60", "-y").exit_code == 0
    record_request_set(home, "pool", 1)
    assert home.invoke("set", "scale", "pool", "200", "-y").exit_code == 0
    big = write_spec(home.root, workers=900, control_planes=1)
    assert home.invoke("apply", "-f", str(big), "-y").exit_code == 0
    assert _requests(home) >= 900 + 200


def test_the_refusal_to_ask_reads_as_one_sentence(home: Home) -> None:
    """QA: "talprov: error: Shrink the control plane ...: not asking, ..." put a
    capital mid-line; each question reads as part of the error's sentence."""
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                     control_planes=3))).exit_code == 0
    refusals = [home.invoke("scale", "demo", "control-planes", "1"),
                home.invoke("scale", "demo", "workers", "90"),
                home.invoke("destroy", "demo")]
    for refused in refusals:
        assert_usage_error(refused.exit_code, refused.output, "--yes")
        line = next(li for li in refused.output.splitlines() if li.startswith("talprov: error:"))
        assert line.startswith("talprov: error: not asking whether to "), line
        assert not re.search(r"[.:;,] [A-Z][a-z]", line), line
        assert line.endswith(": stdin is not a terminal; pass --yes"), line


def test_the_control_plane_shrink_question_says_what_etcd_tolerates() -> None:
    """QA: 3 -> 1 read "member(s) that survive 0 failed member(s) instead of 1", and
    2 -> 1 "survive 0 ... instead of 0". etcd's n members keep quorum through
    (n - 1) // 2 failures; the question says that in words for every size."""
    from talprov.cli.counts import etcd_shrink_effect

    assert etcd_shrink_effect(3, 1) == (
        "etcd will tolerate no member failure (it tolerated 1)")
    assert etcd_shrink_effect(5, 3) == (
        "etcd will tolerate 1 member failure (it tolerated 2)")
    assert etcd_shrink_effect(7, 3) == (
        "etcd will tolerate 1 member failure (it tolerated 3)")
    assert etcd_shrink_effect(2, 1) == (
        "etcd tolerates no member failure, before and after")
    assert etcd_shrink_effect(4, 3) == (
        "etcd tolerates 1 member failure, before and after")
    assert etcd_shrink_effect(9, 5) == (
        "etcd will tolerate 2 member failures (it tolerated 4)")
    for current in range(2, 12):
        for count in range(1, current):
            assert "survive" not in etcd_shrink_effect(current, count)


def test_the_shrink_refusal_carries_the_etcd_effect(home: Home) -> None:
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                     control_planes=3))).exit_code == 0
    refused = home.invoke("scale", "demo", "control-planes", "1")
    assert_usage_error(refused.exit_code, refused.output, "3 -> 1",
                       "etcd will tolerate no member failure (it tolerated 1)")


def test_scale_says_what_acts_on_the_new_size(home: Home) -> None:
    """QA: `talprov scale` said only "demo/workers: size 3", with no hint that
    `talprov reconcile` (or a running serve) makes and removes the machines."""
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                     control_planes=1))).exit_code == 0
    done = home.invoke("scale", "demo", "workers", "3")
    assert done.exit_code == 0, done.output
    [line] = [line for line in done.stderr.splitlines() if "size 3" in line]
    assert "`talprov reconcile`" in line
    assert "talprov serve" in line
    # QA: it named none of the creates it recorded, and had no -o for scripts.
    assert "Plan: 2 to create, 0 to replace, 0 to delete." in done.stdout
    assert done.stdout.count("+ create") == 2
    shrunk = home.invoke("scale", "demo", "workers", "1", "-o", "json")
    assert shrunk.exit_code == 0, shrunk.output
    plan = json.loads(shrunk.stdout)
    assert plan["summary"]["delete"] == 2
    assert "size 1" in shrunk.stderr  # the hint stays on stderr, out of the JSON


def test_a_count_that_is_not_a_number_is_one_line_naming_count(home: Home) -> None:
    """QA: `scale demo workers abc` answered with click's usage block."""
    for args in (("scale", "demo", "workers", "abc"), ("set", "scale", "pool", "1.5")):
        refused = home.invoke(*args)
        assert_usage_error(refused.exit_code, refused.output, "COUNT",
                           "must be a whole number of machines (0..1000)")
        assert "Usage:" not in refused.output
