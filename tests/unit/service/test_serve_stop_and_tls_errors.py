"""``talprov serve`` stopping while a provider call hangs, and unusable TLS files."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from talprov.store.store import Store
from tests.helpers import Home
from tests.unit.service.conftest import TOKENS, WRITE, request_body
from tests.unit.service.serving import ServeProcess, wait_until
from tests.unit.service.test_serve import _self_signed


def test_sigterm_exits_even_when_a_provider_call_hangs(home: Home) -> None:
    """A step that never returns must not keep the process alive past stop_timeout;
    its lease is left to expire (not renewed), so another replica can take over."""
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
    assert "reconcile pass did not finish" in server.output()
    store = Store(home.store_url)
    try:
        # Not renewed any more: free for another replica within lease_ttl (3 s).
        holder = store.lease_holder("hang-1")
        assert holder is not None
        assert holder[1] <= datetime.now(UTC) + timedelta(seconds=3)
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
