"""Repeating work until a condition holds: the one waiting loop of talprov.

Both :meth:`talprov.reconcile.reconciler.Reconciler.run_until` (one request's
wait, ``talprov machine create --wait``) and :meth:`talprov.runloop.RunLoop.run_until`
(``apply --wait``, ``destroy --wait``, the demo) wait through it.
"""

from __future__ import annotations

from collections.abc import Callable


def repeat_until(
    work: Callable[[], None],
    done: Callable[[], bool],
    *,
    timeout: float,
    pause: Callable[[], float],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> bool:
    """Run ``work`` until ``done()`` after it, or until ``timeout`` seconds passed.

    Between runs it sleeps ``pause()`` seconds with ``sleep``; ``clock`` and
    ``sleep`` are injected so that a fake clock makes waits instant. ``work``
    runs at least once. True when done, False on the timeout; raises what
    ``work``, ``done`` or ``pause`` raise.
    """
    deadline = clock() + timeout
    while True:
        work()
        if done():
            return True
        if clock() >= deadline:
            return False
        sleep(pause())
