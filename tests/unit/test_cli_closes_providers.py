"""The CLI closes the providers it built, so endpoint sessions are logged out."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from talprov.cli import app as app_module
from talprov.cli.app import App
from talprov.providers.protocol import Step
from talprov.providers.types import Machine, Owner
from talprov.reconcile.reconciler import ProviderHandle
from talprov.testing import ProviderDouble


class Plain(ProviderDouble):
    """A provider with no steps, no machines and no close()."""

    def __init__(self, name: str) -> None:
        self.name = name

    def steps(self) -> Sequence[Step]:
        return []

    def list_machines(self, owner: Owner) -> list[Machine]:
        return []


class Closing(Plain):
    """A provider that records its close and may fail at it."""

    def __init__(self, name: str, closed: list[str], *, fails: bool = False) -> None:
        super().__init__(name)
        self.closed, self.fails = closed, fails

    def close(self) -> None:
        self.closed.append(self.name)
        if self.fails:
            raise ConnectionError("the BMC went away")


def test_app_close_closes_every_built_provider_even_when_one_fails() -> None:
    closed: list[str] = []
    app = App(config_path=None, store_url=None)
    app._providers = {"first": ProviderHandle(Closing("first", closed, fails=True)),
                      "plain": ProviderHandle(Plain("plain")),
                      "second": ProviderHandle(Closing("second", closed))}

    app.close()
    app.close()  # idempotent: nothing is closed twice

    assert closed == ["first", "second"]
    assert app._providers == {}


class Hanging(Plain):
    """A provider whose logout never answers (a dead BMC) until released."""

    def __init__(self, name: str, release: threading.Event) -> None:
        super().__init__(name)
        self.release, self.entered = release, threading.Event()

    def close(self) -> None:
        self.entered.set()
        self.release.wait()


def test_a_logout_that_never_answers_does_not_hold_the_exit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Review: closes ran one after another with no bound; sushy sets no connect
    # timeout, so a dead BMC held a command's exit for minutes.
    monkeypatch.setattr(app_module, "CLOSE_PROVIDERS_WITHIN", 0.2)
    release, closed = threading.Event(), list[str]()
    hanging = Hanging("dead-bmc", release)
    app = App(config_path=None, store_url=None)
    app._providers = {"dead": ProviderHandle(hanging),
                      "fine": ProviderHandle(Closing("fine", closed))}
    try:
        app.close()
        assert hanging.entered.is_set()
        assert not release.is_set()  # returned while the logout still hangs
        assert closed == ["fine"]  # side by side: the other one was not held up
    finally:
        release.set()
