"""The CLI closes the providers it built, so endpoint sessions are logged out."""

from __future__ import annotations

from collections.abc import Sequence

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
