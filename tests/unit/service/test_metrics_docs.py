"""/metrics through prometheus_client: every documented metric served, the docs
table generated from the code, OpenMetrics on request, one registry per app,
scoping by instance, and a Grafana dashboard that names only real metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from talprov.service.metrics import Metrics, markdown_table
from talprov.store.store import Store
from tests.unit.service.conftest import READ, WRITE, Api, request_body
from tests.unit.service.test_metrics_and_forget import samples
from tests.unit.store.factories import make_request

DOCS = Path(__file__).parents[3] / "docs"
TABLE = re.compile(r"<!-- metrics-table:begin -->\n(.*)<!-- metrics-table:end -->", re.S)
# A metric name in PromQL: a word followed by a selector, a range or a closing paren.
METRIC_IN_QUERY = re.compile(r"\b((?:talprov|process|python)_[a-z_]+)")


def documented() -> set[str]:
    block = TABLE.search((DOCS / "service.md").read_text())
    assert block is not None, "docs/service.md lost its metrics-table markers"
    return set(re.findall(r"^\| `([a-z_]+)` \|", block[1], re.M))


def served_families(text: str) -> set[str]:
    """Family names as exposed (counters with their _total), by prometheus_client's parser."""
    return {family.name + ("_total" if family.type == "counter" else "")
            for family in text_string_to_metric_families(text)}


def test_the_docs_table_is_the_generated_one() -> None:
    block = TABLE.search((DOCS / "service.md").read_text())
    assert block is not None
    assert block[1] == markdown_table(), (
        "regenerate the table in docs/service.md from "
        "talprov.service.metrics.markdown_table()")


def test_every_documented_metric_is_served(api: Api) -> None:
    api.request("POST", "/v1/machine-requests", json=request_body("m-0"), headers=WRITE)
    api.wait_for(lambda: api.stages() == {"m-0": "provisioned"})
    response = api.request("GET", "/metrics", headers=READ)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = documented()
    assert len(names) >= 8
    assert names <= served_families(response.text)


def test_openmetrics_when_the_accept_header_asks(api: Api) -> None:
    response = api.request("GET", "/metrics", headers={
        **READ, "Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    # prometheus_client's OpenMetrics parser has no type annotations.
    parsed = openmetrics_families(response.text)  # type: ignore[no-untyped-call]
    families = {f.name: f for f in parsed}
    assert families["talprov_reconcile_passes"].type == "counter"
    assert families["talprov_requests"].type == "gauge"


def test_each_app_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.observe_step("aws", "ensure-machine", 0.2)
    first.note_pass(0.5, failed=True)
    one, two = (samples(m.exposition()[0].decode()) for m in (first, second))
    step = ("talprov_step_duration_seconds_count",
            frozenset({("provider", "aws"), ("step", "ensure-machine")}))
    assert one[step] == 1
    assert step not in two
    assert (one[("talprov_reconcile_pass_failures_total", frozenset())],
            two[("talprov_reconcile_pass_failures_total", frozenset())]) == (1, 0)


def test_a_scoped_exposition_shows_only_the_allowed_instances(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    store.create_request(make_request("a-1", provider="aws-a"))
    store.create_request(make_request("b-1", provider="aws-b"))
    metrics = Metrics()
    metrics.watch_store(store, ["aws-a", "aws-b"])
    metrics.count_error("aws-b", "ensure-machine", "AuthError")
    metrics.note_pass(0.1, failed=False)
    full = samples(metrics.exposition()[0].decode())
    scoped = samples(metrics.exposition(allowed={"aws-a"})[0].decode())
    pending_b = ("talprov_requests", frozenset({("provider", "aws-b"), ("stage", "pending")}))
    assert full[pending_b] == 1
    assert pending_b not in scoped
    assert scoped[("talprov_requests",
                   frozenset({("provider", "aws-a"), ("stage", "pending")}))] == 1
    assert not [key for key in scoped if ("provider", "aws-b") in key[1]]
    # This replica's own series and the process metrics name no instance: they stay.
    assert ("talprov_reconcile_passes_total", frozenset()) in scoped
    assert ("process_cpu_seconds_total", frozenset()) in scoped
    store.close()


def test_the_grafana_dashboard_names_only_documented_metrics() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    names = documented()
    used: set[str] = set()
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            found = set(METRIC_IN_QUERY.findall(target["expr"]))
            assert found, (panel["title"], target["expr"])
            for name in found:
                family = re.sub(r"_(bucket|count|sum)$", "", name)
                assert family in names, (panel["title"], name)
            used |= found
    own = {name for name in names if name.startswith("talprov_")}
    assert own <= {re.sub(r"_(bucket|count|sum)$", "", n) for n in used}
