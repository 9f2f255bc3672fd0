"""Run the template step of several providers at once, as concurrent workers would."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from talprov.providers.types import Retry
from talprov.vmware.provider import VSphereProvider


def race_first_step(pairs: Sequence[tuple[VSphereProvider, Any]]) -> list[str]:
    """Run each provider's first step on its context, all threads released together,
    until every one is done; returns the reasons of the ``Retry`` answers seen.

    Raises ``AssertionError`` naming what went wrong in any thread (a step that
    raised, or one not done after 200 tries).
    """
    waits: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(pairs))

    def run(provider: VSphereProvider, ctx: Any) -> None:
        step = provider.steps()[0]
        start.wait()
        try:
            for _ in range(200):
                result = step.run(ctx)
                if result is None:
                    return
                assert isinstance(result, Retry)
                waits.append(result.reason)
                time.sleep(0.02)
            raise AssertionError("template never became ready")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return waits
