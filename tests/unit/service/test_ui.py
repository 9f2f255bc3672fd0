"""The status page in process: sign-in, cookies and CSRF, scope, pages, live changes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from talprov.providers.types import MachineRequest, Stage
from talprov.service.ui.routes import POLL_OVERLAP
from talprov.service.ui.views import PlanCache
from tests.helpers import Home
from tests.unit.service.conftest import (
    OTHER_TOKEN,
    READ_TOKEN,
    WRITE_TOKEN,
    Api,
    open_api,
)
from tests.unit.test_cluster_apply import write_spec


@pytest.fixture
def two_providers(home: Home) -> Iterator[Api]:
    """The service without workers over two instances, ``fake`` and ``other``."""
    home.providers["other"] = {"type": "file", "path": home.cloud_path("other")}
    home.write_config()
    yield from open_api(home, workers=False)


def csrf_of(client: TestClient) -> str:
    page = client.get("/ui/sign-in")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def sign_in(client: TestClient, token: str) -> None:
    response = client.post("/ui/sign-in", data={"csrf": csrf_of(client), "token": token},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui"


def add(api: Api, request_id: str, provider: str = "fake", **labels: str) -> None:
    request = MachineRequest(id=request_id, provider=provider, talos_version="v1.11.5",
                             labels={"role": "worker", **labels})
    api.ctx.store.create_request(request)


def test_pages_need_a_session_and_sign_in_keeps_the_token_in_a_strict_cookie(
    idle_api: Api,
) -> None:
    client = idle_api.client
    first = client.get("/ui", follow_redirects=False)
    assert (first.status_code, first.headers["location"]) == (303, "/ui/sign-in")
    csrf = csrf_of(client)
    # The token goes in the body of a POST, never in a URL.
    response = client.post("/ui/sign-in", data={"csrf": csrf, "token": WRITE_TOKEN},
                           follow_redirects=False)
    assert response.status_code == 303
    cookie = next(v for v in response.headers.get_list("set-cookie")
                  if v.startswith("talprov_session="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/ui"} <= flags
    assert WRITE_TOKEN not in response.headers["location"]
    page = client.get("/ui")
    assert page.status_code == 200
    assert "Provider instances" in page.text
    assert ">fake <" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    out = client.post("/ui/sign-out", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/ui", follow_redirects=False).status_code == 303


def test_sign_in_refuses_a_missing_csrf_token_a_foreign_origin_and_a_wrong_token(
    idle_api: Api,
) -> None:
    client = idle_api.client
    csrf = csrf_of(client)
    no_csrf = client.post("/ui/sign-in", data={"token": WRITE_TOKEN}, follow_redirects=False)
    assert no_csrf.status_code == 403
    wrong_csrf = client.post("/ui/sign-in", data={"csrf": csrf[::-1], "token": WRITE_TOKEN},
                             follow_redirects=False)
    assert wrong_csrf.status_code == 403
    foreign = client.post("/ui/sign-in", data={"csrf": csrf, "token": WRITE_TOKEN},
                          headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert foreign.status_code == 403
    bad = client.post("/ui/sign-in", data={"csrf": csrf, "token": "nope"},
                      follow_redirects=False)
    assert bad.status_code == 401
    assert "not valid" in bad.text
    assert "talprov_session" not in client.cookies
    # Signing out is a write too.
    assert client.post("/ui/sign-out", data={"x": "1"},
                       follow_redirects=False).status_code == 403


def test_a_scoped_token_sees_only_its_providers_and_is_refused_the_others(
    two_providers: Api,
) -> None:
    add(two_providers, "mine-1")
    add(two_providers, "theirs-1", provider="other")
    assert two_providers.ctx.store.claim("theirs-1", owner="worker-elsewhere", ttl=60)
    client = two_providers.client
    sign_in(client, READ_TOKEN)  # scoped to "fake", read only
    overview = client.get("/ui").text
    assert ">fake <" in overview
    assert ">other <" not in overview
    assert "worker-elsewhere" not in overview  # a lease on a request out of scope
    table = client.get("/ui/requests").text
    assert "mine-1" in table
    assert "theirs-1" not in table
    assert client.get("/ui/requests/mine-1").status_code == 200
    refused = client.get("/ui/requests/theirs-1")
    assert refused.status_code == 404
    assert "outside what your token may see" in refused.text
    assert client.get("/ui/requests?provider=other").text.count('data-id="') == 0
    changes = client.get("/ui/changes").json()
    assert [item["id"] for item in changes["items"]] == ["mine-1"]
    client.cookies.clear()
    sign_in(client, OTHER_TOKEN)
    assert "worker-elsewhere" in client.get("/ui").text
    assert client.get("/ui/requests/theirs-1").status_code == 200
    assert client.get("/ui/requests/mine-1").status_code == 404


def test_the_table_filters_by_label_cluster_stage_and_text_and_pages(idle_api: Api) -> None:
    for n in range(60):
        add(idle_api, f"req-{n:02d}", team="blue" if n % 2 else "red")
    add(idle_api, "in-cluster", **{"talprov.cluster": "prod", "talprov.set": "workers"})
    client = idle_api.client
    sign_in(client, WRITE_TOKEN)

    def ids(url: str) -> list[str]:
        return re.findall(r'<tr data-id="([^"]+)"', client.get(url).text)

    assert len(ids("/ui/requests")) == 50
    assert len(ids("/ui/requests?page=2")) == 11
    blue = ids("/ui/requests?label=team%3Dblue")
    assert len(blue) == 30
    assert all(int(i[-2:]) % 2 for i in blue)
    assert ids("/ui/requests?cluster=prod&set=workers") == ["in-cluster"]
    assert ids("/ui/requests?q=req-1") == [f"req-{n}" for n in range(10, 20)]
    assert ids("/ui/requests?stage=provisioned") == []
    assert "expected KEY=VALUE" in client.get("/ui/requests?label=oops").text
    page = client.get("/ui/requests?label=team%3Dblue&page=1").text
    assert "page=2" not in page  # 30 blue requests: one page


def test_changes_hands_out_only_what_changed_since_the_watermark(idle_api: Api) -> None:
    store = idle_api.ctx.store
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    for n in range(5):
        store.create_request(
            MachineRequest(id=f"old-{n}", provider="fake", talos_version="v1.11.5"),
            now=long_ago,
        )
    client = idle_api.client
    sign_in(client, WRITE_TOKEN)
    watermark = (long_ago + timedelta(minutes=1)).isoformat()
    assert client.get("/ui/changes", params={"since": watermark}).json()["items"] == []
    record = store.get_request("old-3")
    assert record is not None
    store.save_progress(
        "old-3", expected_version=record.version, stage=Stage.PROVISIONING, step_index=0,
        step_name="ensure-machine", state={}, error="ensure-machine: <img src=x onerror=alert(1)>",
        attempts=1, next_attempt_at=None,
        step_started_at=None, infra_id=None, machine_uuid=None, addresses=(),
        events=["provisioning started"],
    )
    body = client.get("/ui/changes", params={"since": watermark}).json()
    assert [item["id"] for item in body["items"]] == ["old-3"]
    row = body["items"][0]["html"]
    assert "provisioning" in row
    # Provider errors are text from elsewhere: escaped in rows and pages alike.
    assert "&lt;img src=x onerror=alert(1)&gt;" in row
    assert "<img" not in row
    assert "<img" not in client.get("/ui/requests/old-3").text
    newest = datetime.fromisoformat(body["watermark"])
    assert newest > long_ago + POLL_OVERLAP
    assert client.get("/ui/changes?since=yesterday").status_code == 422
    client.cookies.clear()
    assert client.get("/ui/changes").status_code == 401


def test_a_request_page_shows_its_timeline_and_links_back_to_its_cluster(api: Api) -> None:
    add(api, "tl-1", **{"talprov.cluster": "prod", "talprov.set": "workers"})
    api.ctx.wake()
    api.wait_for(lambda: api.stages().get("tl-1") == "provisioned")
    client = api.client
    sign_in(client, WRITE_TOKEN)
    page = client.get("/ui/requests/tl-1").text
    assert 'id="request-stage">provisioned<' in page
    steps = re.findall(r'data-step="([^"]+)"><th scope="row">[^<]+</th>'
                       r'<td data-label="Status"><span class="status status-(\w+)"', page)
    assert steps
    assert all(status == "done" for _name, status in steps)
    assert 'href="/ui/clusters/prod"' in page
    assert "provisioning started" in page


def test_static_assets_come_from_the_package(idle_api: Api) -> None:
    css = idle_api.client.get("/ui/static/ui.css")
    js = idle_api.client.get("/ui/static/ui.js")
    assert css.status_code == 200
    assert ":focus-visible" in css.text
    assert js.status_code == 200
    assert "/ui/changes" in js.text
    page = idle_api.client.get("/ui/sign-in").text
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_clusters_show_sets_plan_and_recent_actions_within_scope(two_providers: Api) -> None:
    home = two_providers.home
    result = home.invoke("apply", "-f", str(write_spec(home.root, workers=2, control_planes=1)))
    assert result.exit_code == 0, result.output
    client = two_providers.client
    sign_in(client, READ_TOKEN)
    listing = client.get("/ui/clusters").text
    assert 'href="/ui/clusters/demo"' in listing
    page = client.get("/ui/clusters/demo").text
    sets = re.findall(r'<th scope="row"><a href="/ui/requests\?cluster=demo&amp;set=([\w-]+)">'
                      r'[^<]+</a></th><td data-label="Desired">(\d+)</td>'
                      r'<td data-label="Provisioned">(\d+)</td>'
                      r'<td data-label="Provisioning">(\d+)</td>', page)
    assert sets == [("control-planes", "1", "0", "1"), ("workers", "2", "0", "2")]
    # Every machine is still being made: no "matches its spec" yet (QA).
    assert "No changes to plan: 3 machines still being made." in page
    assert "matches its spec" not in page
    assert page.count("request created") == 3
    members = re.findall(r'<tr data-id="([^"]+)"',
                         client.get("/ui/requests?cluster=demo&set=workers").text)
    assert len(members) == 2
    assert 'href="/ui/clusters/demo"' in client.get(f"/ui/requests/{members[0]}").text
    fragment = client.get("/ui/clusters/demo?fragment=1").text
    assert "<html" not in fragment
    assert "Recent actions" in fragment
    client.cookies.clear()
    sign_in(client, OTHER_TOKEN)  # its providers do not include the cluster's
    assert 'href="/ui/clusters/demo"' not in client.get("/ui/clusters").text
    hidden = client.get("/ui/clusters/demo?fragment=1")
    assert hidden.status_code == 404
    assert "outside what your token may see" in hidden.text


def test_a_cluster_plan_is_shared_for_a_few_seconds_then_computed_again(idle_api: Api) -> None:
    home = idle_api.home
    assert home.invoke("apply", "-f", str(write_spec(home.root))).exit_code == 0
    now = [100.0]
    plans = PlanCache(ttl=5.0, clock=lambda: now[0])
    first = plans.get(idle_api.ctx, "demo")
    assert first is not None
    assert [s.name for s in first.sets] == ["control-planes", "workers"]
    now[0] += 4.9
    assert plans.get(idle_api.ctx, "demo") is first
    now[0] += 0.2
    again = plans.get(idle_api.ctx, "demo")
    assert again is not first
    assert again == first  # nothing changed meanwhile
    assert plans.get(idle_api.ctx, "no-such-cluster") is None


def test_the_overview_shows_an_instance_the_loop_backs_off_from(home: Home) -> None:
    # An empty api_secret makes the file provider's listing raise AuthError.
    home.providers["locked"] = {"type": "file", "path": home.cloud_path("locked"),
                                "api_secret": ""}
    home.write_config()
    for api in open_api(home):
        add(api, "blocked", provider="locked")
        loop = api.ctx.loop
        assert loop is not None
        troubles = loop.instance_troubles
        api.wait_for(lambda: "locked" in troubles())  # noqa: B023 - used at once
        sign_in(api.client, WRITE_TOKEN)
        page = api.client.get("/ui").text
        cards = {name: card for card in page.split('<article class="card provider"')[1:]
                 for name in ("locked", "fake") if f">{name} <" in card}
        assert "Backing off" in cards["locked"]
        assert "credentials refused" in cards["locked"]
        # The instance that answers is not backed off.
        assert "Backoff: none" in cards["fake"]


def test_the_page_takes_no_more_label_filters_than_the_api(idle_api: Api) -> None:
    client = idle_api.client
    sign_in(client, WRITE_TOKEN)
    query = "&".join(f"label=k{n}=v" for n in range(17))
    assert client.get(f"/ui/requests?{query}").status_code == 422
    query = "&".join(f"label=k{n}=v" for n in range(16))
    assert client.get(f"/ui/requests?{query}").status_code == 200
