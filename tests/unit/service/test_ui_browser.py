"""The status page in a real browser (Debian's chromium through Playwright) against a
real ``talprov serve`` with requests on the file provider double, a cluster, and an
AWS instance whose endpoint is a closed loopback port (an unreachable provider).

With ``TALPROV_UI_SCREENSHOTS=1`` the test also saves every page at 1280×800 and
at 390×844 (a phone) into docs/img/, which docs/ui.md and README.md show.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, sync_playwright

from tests.emulators.moto import fake_credentials
from tests.helpers import SEEN_OUTPUT, WORKER_CONFIG, Home
from tests.unit.service.conftest import (
    OTHER_TOKEN,
    READ_TOKEN,
    TOKENS,
    WRITE,
    WRITE_TOKEN,
    request_body,
)
from tests.unit.service.serving import ServeProcess, wait_until
from tests.unit.test_cluster_apply import write_spec

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[3] / "docs" / "img"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh")
    with tempfile.TemporaryDirectory(prefix="talprov-chromium-") as profile, \
            sync_playwright() as playwright:
        # A fresh profile directory per run; nothing is downloaded.
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context
        finally:
            context.close()


def sign_in(page: Page, base: str, token: str) -> None:
    page.goto(f"{base}/ui")
    assert page.url.endswith("/ui/sign-in")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/ui")
    assert token not in page.url


def shoot(page: Page, name: str) -> None:
    """Save the page at both widths (only when TALPROV_UI_SCREENSHOTS=1)."""
    if os.environ.get("TALPROV_UI_SCREENSHOTS") != "1":
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(150)
        page.screenshot(path=str(SHOTS / f"ui-{name}-{size}.png"), full_page=size == "phone")
    page.set_viewport_size({"width": 1280, "height": 800})


def test_the_status_page_in_a_browser(home: Home, browser: BrowserContext) -> None:
    home.providers["fake"]["boot_listings"] = 25
    # "other" has no capacity: its requests carry an error and are retried.
    home.providers["other"] = {"type": "file", "path": home.cloud_path("other"),
                               "fail_creates": True}
    home.providers["broken"] = {
        "type": "aws", "region": "eu-west-1", "endpoint_url": f"http://127.0.0.1:{closed_port()}",
        "max_attempts": 1, "connect_timeout": 1, "read_timeout": 2,
    }
    # The API only: the requests stay pending until the worker below starts.
    home.write_config(service={"tokens": TOKENS, "workers": False})
    env = {**home.env(), **fake_credentials()}
    spec = write_spec(home.root, workers=2, control_planes=1)
    applied = subprocess.run([sys.executable, "-m", "talprov", "apply", "-f", str(spec)],
                             env=env, cwd=home.root, capture_output=True, text=True,
                             timeout=120, check=False)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    server = ServeProcess(env, home.root)
    worker: subprocess.Popen[str] | None = None
    try:
        base = server.url
        with httpx.Client(base_url=base, timeout=10) as api:
            for request_id, provider, labels in (
                ("web-1", "fake", {"team": "blue"}), ("web-2", "fake", {"team": "red"}),
                ("theirs-1", "other", {}), ("unlucky-1", "broken", {}),
            ):
                body = request_body(request_id, provider=provider, config=WORKER_CONFIG,
                                    labels={"role": "worker", **labels})
                if provider == "broken":
                    body["provider_data"] = {"instance_type": "t3.small"}
                response = api.post("/v1/machine-requests", json=body, headers=WRITE)
                assert response.status_code == 201, response.text
        page = browser.new_page()
        page.goto(f"{base}/ui")
        shoot(page, "sign-in")
        sign_in(page, base, WRITE_TOKEN)

        # A request moves from pending to provisioned while the page is open.
        page.goto(f"{base}/ui/requests/web-1")
        stage = page.locator("#request-stage")
        assert stage.inner_text() == "pending"
        page.evaluate("window.__notReloaded = true")
        worker = subprocess.Popen(
            [sys.executable, "-m", "talprov", "reconcile", "--interval", "0.5"],
            env=env, cwd=home.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen: list[str] = []

        def provisioned() -> bool:
            text = stage.inner_text()
            if not seen or seen[-1] != text:
                seen.append(text)
            return text == "provisioned"

        wait_until(provisioned, 60, "web-1 provisioned on the open page")
        assert page.evaluate("window.__notReloaded") is True
        assert seen[0] == "pending"
        assert seen[-1] == "provisioned"
        statuses = page.locator("table.steps span.status").all_inner_texts()
        assert statuses == ["done", "done"]
        assert page.locator("table.steps tr[data-step='wait-running'] td").nth(2).inner_text() \
            .endswith(" s")
        shoot(page, "request")

        # The unreachable provider's health, and the other one's request errors, show
        # on the overview; the errors arrive while the page is open.
        page.goto(f"{base}/ui")
        page.evaluate("window.__notReloaded = true")

        def card(name: str) -> Locator:
            return page.locator("article.provider", has=page.get_by_role("heading", name=name))

        broken = card("broken").locator(".health").inner_text()
        assert broken.startswith("Unhealthy")
        assert "endpoint unreachable" in broken
        assert card("fake").locator(".health").inner_text().startswith("Healthy")
        wait_until(lambda: card("other").locator(".last-error").count() == 1, 60,
                 "the other provider's request error on the overview")
        assert "no capacity" in card("other").locator(".last-error").inner_text()
        assert page.evaluate("window.__notReloaded") is True
        shoot(page, "overview")

        # Filter by label, then open a request's timeline from the table.
        page.goto(f"{base}/ui/requests")
        page.get_by_label("Label (KEY=VALUE)").fill("team=blue")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**/ui/requests?*label=team%3Dblue*")
        ids = page.locator("table.requests tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.id)")
        assert ids == ["web-1"]
        page.get_by_role("link", name="web-1").click()
        page.wait_for_url(f"{base}/ui/requests/web-1")
        assert page.locator("table.events").inner_text().count("step ") >= 2
        page.goto(f"{base}/ui/requests")
        shoot(page, "requests")

        # The cluster, its sets and plan, linked to its requests and back.
        page.goto(f"{base}/ui/clusters")
        wait_until(lambda: "demo" in page.locator("#live").inner_text(), 10, "cluster list")
        shoot(page, "clusters")
        page.get_by_role("link", name="demo", exact=True).click()
        page.wait_for_url(f"{base}/ui/clusters/demo")
        assert page.locator("table.sets tbody tr").count() == 2
        wait_until(lambda: "No changes" in page.locator("#live").inner_text(), 60,
                 "the cluster converged on the open page")
        shoot(page, "cluster")
        page.get_by_role("link", name="All requests of this cluster").click()
        member = page.locator("table.requests tbody tr").first.get_attribute("data-id")
        assert member is not None
        page.goto(f"{base}/ui/requests/{member}")
        assert page.get_by_role("link", name="cluster demo").count() == 1

        # A token scoped to another provider is refused the request.
        for token, hidden in ((READ_TOKEN, "theirs-1"), (OTHER_TOKEN, "web-1")):
            browser.clear_cookies()  # one browser profile: sign out of the other token
            scoped = browser.new_page()
            sign_in(scoped, base, token)
            refused = scoped.goto(f"{base}/ui/requests/{hidden}")
            assert refused is not None
            assert refused.status == 404
            assert "outside what your token may see" in scoped.content()
            scoped.close()
    finally:
        if worker is not None:
            worker.terminate()
            out, _ = worker.communicate(timeout=30)
            SEEN_OUTPUT.append(out)
        assert server.terminate() == 0, server.output()


def test_the_api_docs_render_in_a_browser_without_internet(
        home: Home, browser: BrowserContext) -> None:
    """/docs draws every operation from the OpenAPI 3.1 document FastAPI publishes
    (Swagger UI 4 could not: "Unable to render this definition")."""
    home.write_config(service={"tokens": TOKENS, "workers": False})
    server = ServeProcess(home.env(), home.root)
    try:
        page = browser.new_page()
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(server.url)
                else outside.append(r.url))
        page.goto(f"{server.url}/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        assert "Unable to render" not in page.content()
        assert page.locator(".opblock").count() >= 5
        assert outside == []
    finally:
        server.terminate()
