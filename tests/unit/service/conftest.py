"""Fixtures for the service tests: the API in process over a throwaway home."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talprov.cli.app import App
from talprov.service.app import create_app
from talprov.service.config import ServiceConfig
from talprov.service.context import ServiceContext
from tests.emulators.moto import moto_process, moto_server  # noqa: F401
from tests.emulators.postgres import postgres_server, postgres_url  # noqa: F401
from tests.helpers import SEEN_OUTPUT, Home

WRITE_TOKEN = "write-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"
OTHER_TOKEN = "other-token-0123456789abcdef"

TOKENS: list[dict[str, Any]] = [
    {"name": "omni", "value": WRITE_TOKEN, "providers": ["*"], "access": "write"},
    {"name": "dashboards", "value": READ_TOKEN, "providers": ["fake"], "access": "read"},
    {"name": "elsewhere", "value": OTHER_TOKEN, "providers": ["other"], "access": "write"},
]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


WRITE = auth(WRITE_TOKEN)
READ = auth(READ_TOKEN)
OTHER = auth(OTHER_TOKEN)


@dataclass
class Api:
    """A running app (workers included) and what it is built on."""

    client: TestClient
    ctx: ServiceContext
    home: Home

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self.client.request(method, url, **kwargs)
        SEEN_OUTPUT.append(response.text)
        return response

    def wait_for(self, check: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            time.sleep(0.05)

    def stages(self, token: dict[str, str] = WRITE) -> dict[str, str]:
        body = self.request("GET", "/v1/machine-requests", headers=token).json()
        return {item["id"]: item["stage"] for item in body["items"]}


def request_body(request_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": request_id,
        "provider": "fake",
        "talos_version": "v1.13.9",
        "labels": {"role": "worker"},
    }
    body.update(fields)
    return body


def open_api(home: Home, **service: Any) -> Iterator[Api]:
    settings: dict[str, Any] = {"tokens": TOKENS, "reconcile_interval": 0.05, "lease_ttl": 5}
    settings.update(service)
    app_state = App(config_path=str(home.config_path), store_url=None)
    config = ServiceConfig.model_validate(settings)
    app = create_app(app_state.store, app_state.all_handles(), app_state.runtime, config)
    try:
        with TestClient(app) as client:
            yield Api(client=client, ctx=app.state.ctx, home=home)
    finally:
        app_state.close()


@pytest.fixture
def api(home: Home) -> Iterator[Api]:
    """The service over ``home`` with its reconcile loop running."""
    yield from open_api(home)


@pytest.fixture
def idle_api(home: Home) -> Iterator[Api]:
    """The service without workers: requests stay where the API put them."""
    yield from open_api(home, workers=False)
