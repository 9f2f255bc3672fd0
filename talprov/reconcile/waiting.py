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

    Between runs it sleeps ``pause()`` seconds with ``sleep``, never past the
    deadline, and starts no run once the deadline has passed: only a run already
    in flight can carry the wait beyond ``timeout`` (QA: `machine create --wait
    --timeout 15` returned after ~25 s, having slept a whole pause past the
    deadline and run one more pass after it). ``clock`` and ``sleep`` are injected
    so that a fake clock makes waits instant. ``work`` runs at least once. True
    when done, False on the timeout; raises what ``work``, ``done`` or ``pause``
    raise.
    """
    deadline = clock() + timeout
    while True:
        work()
        if done():
            return True
        left = deadline - clock()
        if left <= 0:
            return False
        sleep(min(pause(), left))
        if clock() >= deadline:
            # Asked once more: what the last run and the sleep left may be done.
            return done()
