"""``talprov serve`` stopping while a provider call hangs, and unusable TLS files."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from talprov.store.store import Store
from tests.helpers import Home
from tests.unit.service.conftest import TOKENS, WRITE, request_body
from tests.unit.service.serving import ServeProcess, wait_until
from tests.unit.service.test_serve import _self_signed


def test_sigterm_exits_even_when_a_provider_call_hangs(home: Home) -> None:
    """A step that never returns must not hold the stop: the worker process
    interrupts its pass at once (not after stop_timeout)."""
    marker = home.root / "paused"
    home.providers["fake"]["pause_after_create"] = str(marker)
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.1, "lease_ttl": 3,
                               "stop_timeout": 1})
    server = ServeProcess(home.env(), home.root)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            created = client.post("/v1/machine-requests", json=request_body("hang-1"),
                                  headers=WRITE)
            assert created.status_code == 201, created.text
        wait_until(marker.exists, 20, "the provider call to hang")
    finally:
        started = time.monotonic()
        code = server.terminate(timeout=20)
    took = time.monotonic() - started
    assert code == 0, server.output()
    assert took < 10, (took, server.output())
    assert server.output().rstrip().endswith("stopped"), server.output()
    assert "did not finish" not in server.output(), server.output()
    store = Store(home.store_url)
    try:
        # The interruption broke off the step in the worker's main thread, which
        # gave the lease back; had the step run in a thread left behind, the
        # lease would be kept, not renewed: free for another replica within
        # lease_ttl (3 s) either way.
        holder = store.lease_holder("hang-1")
        assert holder is None or holder[1] <= datetime.now(UTC) + timedelta(seconds=3)
    finally:
        store.close()


def _serve_with_tls(home: Home, cert: Path, key: Path) -> tuple[int, str]:
    home.write_config(service={"tokens": TOKENS, "workers": False,
                               "tls": {"cert": str(cert), "key": str(key)}})
    result = home.run("serve", "--listen", "127.0.0.1:0", timeout=30)
    return result.returncode, result.stderr


def test_missing_tls_key_names_the_field(home: Home) -> None:
    cert, _key = _self_signed(home.root)
    code, err = _serve_with_tls(home, cert, home.root / "absent.key")
    assert code == 2  # a usage/config error, like a missing token list
    assert "service.tls.key" in err
    assert "absent.key: no such file" in err
    assert "Traceback" not in err


def test_key_that_does_not_fit_the_cert_is_refused_clearly(home: Home) -> None:
    cert, _key = _self_signed(home.root)
    other = home.root / "other"
    other.mkdir()
    _other_cert, other_key = _self_signed(other)
    code, err = _serve_with_tls(home, cert, other_key)
    assert code == 2  # a usage/config error, like a missing token list
    assert "service.tls: cannot use" in err
    assert "KEY_VALUES_MISMATCH" in err
    assert "Traceback" not in err
    assert "PRIVATE KEY" not in err


def test_ctrl_c_stops_gracefully_and_exits_130(home: Home) -> None:
    """SIGTERM exits 0 (a service manager's stop); Ctrl-C stops the same graceful
    way, says so, and exits 130 as every talprov command does (it died by a
    KeyboardInterrupt before, skipping the "stopped" line and the wait guard)."""
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.1})
    server = ServeProcess(home.env(), home.root)
    server.process.send_signal(signal.SIGINT)
    assert server._finish(30) == 130, server.output()
    assert server.output().rstrip().endswith("stopped"), server.output()
    assert "Traceback" not in server.output()
    server = ServeProcess(home.env(), home.root)
    assert server.terminate() == 0, server.output()
    assert server.output().rstrip().endswith("stopped"), server.output()


@pytest.mark.parametrize(("first", "second", "code"), [
    (signal.SIGINT, signal.SIGTERM, 130), (signal.SIGTERM, signal.SIGINT, 0)])
def test_a_second_signal_while_serve_stops_keeps_the_first_ones_stop(
        home: Home, first: signal.Signals, second: signal.Signals, code: int) -> None:
    """Ctrl-C and a SIGTERM ms later (or the other way round): one clean stop, with
    the first signal's exit code."""
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.1})
    for gap in (0.005, 0.05):
        server = ServeProcess(home.env(), home.root)
        server.process.send_signal(first)
        time.sleep(gap)
        server.process.send_signal(second)
        assert server._finish(30) == code, server.output()
        assert "Traceback" not in server.output()
        assert server.output().rstrip().endswith("stopped"), server.output()


def test_serve_and_config_check_both_exit_2_for_an_invalid_service_block(home: Home) -> None:
    """QA: duplicate token names made serve exit 2 but `config check` exit 1."""
    home.write_config(service={"tokens": [TOKENS[0], TOKENS[0]], "workers": False})
    served = home.run("serve", "--listen", "127.0.0.1:0", timeout=30)
    assert served.returncode == 2, served.stderr
    checked = home.run("config", "check", "-o", "json")
    assert checked.returncode == 2, checked.stdout + checked.stderr
    rows = {row["part"]: row["result"] for row in json.loads(checked.stdout)}
    assert "tokens[1].name" in rows["service"]
    assert rows["providers.fake"] == "ok"  # the other rows are still shown


@pytest.mark.parametrize(("service", "field"), [
    ({"tokens": TOKENS, "listen": "0.0.0.0:18461"}, "service.listen"),
    ({"tokens": TOKENS, "tls": {"cert": "/nonexistent/c.pem", "key": "/nonexistent/k.pem"}},
     "service.tls.cert"),
    ({"tokens": []}, "service.tokens"),
])
def test_config_check_refuses_what_serve_refuses_to_start_with(
        home: Home, service: dict[str, object], field: str) -> None:
    """QA: `config check` exited 0 for service blocks serve refuses with 2 (plain HTTP
    on a routable address, TLS files that are not there, no tokens)."""
    home.write_config(service={**service, "workers": False})
    served = home.invoke("serve")
    assert served.exit_code == 2, served.output
    assert field in served.output
    checked = home.invoke("config", "check", "-o", "json")
    assert checked.exit_code == 2, checked.output
    rows = {row["part"]: row["result"] for row in json.loads(checked.stdout)}
    assert field in rows["service"]
    assert rows["providers.fake"] == "ok"


@pytest.mark.parametrize("key", ["", "   ", "shortsecretvalue123", "a" * 40])
def test_config_check_refuses_the_store_key_every_command_refuses(
        home: Home, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """QA: an empty TALPROV_STORE_KEY (a unit file's unset ${KEY}) silently stored
    configs in clear, and `config check` took a short key that serve refuses."""
    monkeypatch.setenv("TALPROV_STORE_KEY", key)
    home.write_config()
    listed = home.invoke("machine", "list")
    assert listed.exit_code == 2, listed.output
    assert "TALPROV_STORE_KEY" in listed.output
    checked = home.invoke("config", "check", "-o", "json")
    assert checked.exit_code == 2, checked.output
    rows = {row["part"]: row["result"] for row in json.loads(checked.stdout)}
    assert "TALPROV_STORE_KEY" in rows
    assert key.strip() == "" or key not in checked.output


def test_a_thread_worker_stuck_in_a_call_says_at_once_that_serve_waits(home: Home) -> None:
    """QA: with the reconcile loop in a thread, a stop printed nothing for all of
    stop_timeout, then a warning that the leases expire after lease_ttl, which a
    later talprov of this host does not wait for."""
    marker = home.root / "paused"
    home.providers["fake"]["pause_after_create"] = str(marker)
    # stop_timeout is the failure's time (the line came only once it had passed):
    # long enough that a loaded machine's delay in saying it at once stays below.
    home.write_config(service={"tokens": TOKENS, "reconcile_interval": 0.1, "lease_ttl": 30,
                               "stop_timeout": 8, "worker_mode": "thread"})
    server = ServeProcess(home.env(), home.root)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            created = client.post("/v1/machine-requests", json=request_body("hang-2"),
                                  headers=WRITE)
            assert created.status_code == 201, created.text
        wait_until(marker.exists, 20, "the provider call to hang")
        server.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "stopping: waiting up to 8 s" in server.output(), 6,
                   "serve to say that it waits")
    finally:
        code = server.terminate(timeout=20)
    assert code == 0, server.output()
    assert "takes its leases over at once" in server.output(), server.output()
    assert "on another host after lease_ttl (30 s)" in server.output(), server.output()
