"""SIGINT or SIGTERM stopping a command once, cleanly: the handlers, the one-signal
rule, stops deferred over a section that must not be broken off, and the one line
and exit code an interrupted command ends with.

Imports nothing but ``signal`` and ``sys``: the launcher installs these handlers
before it imports anything else, because a stop signal that comes before them is
lost for good when the process inherited SIGINT ignored (bash starts every
background command of a script so) and kills the process without its line
otherwise.
"""

from __future__ import annotations

import signal
import sys

# Not `from typing import ...`: typing takes milliseconds to import, more under
# load, and the launcher imports this module before its handlers are in place.
# Type checkers take any name TYPE_CHECKING for typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any, NoReturn


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (a service manager's stop, a CI or Kubernetes timeout).

    A KeyboardInterrupt, so that every ``except KeyboardInterrupt`` and ``finally``
    that gives leases back on Ctrl-C does the same on SIGTERM.
    """


#: The signals that stop a command: Ctrl-C and a service manager's stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: The stop signal that came while stops were deferred (see :func:`defer_stops`).
_deferred: list[int] = []


def _interruption(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _stop(signum: int, _frame: object) -> None:
    # The first of the two is the one that counts: from now on both are ignored,
    # so that a second one (Ctrl-C then a CI's SIGTERM ms later, or Ctrl-C twice)
    # cannot break off the clean-up (lease releases, closing connections) that the
    # first one started with a traceback of its own, nor change its exit code.
    # SIGKILL remains for a stuck process.
    ignore_stop_signals()
    raise _interruption(signum)


def stop_on_signals() -> None:
    """From now on, the first SIGINT raises KeyboardInterrupt and the first SIGTERM
    :class:`Terminated` in the main thread; either one ignores both afterwards.

    Also when SIGINT was ignored at start (as bash leaves it for a background
    command of a script, a shell without job control): `kill -INT` is then still
    meant for talprov, whose docs promise that SIGINT stops it. Call from the main
    thread of a command-line entry point only (Python runs signal handlers there),
    first thing. Idempotent. A command that stops its own way (``serve``)
    installs its handlers over these and restores them.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)


def ignore_stop_signals(*, for_exit: bool = False) -> None:
    """Ignore SIGINT and SIGTERM from now on: a process that is stopping already,
    or whose command has ended, has nothing left that a signal could stop, and a
    handler that raised then would break off the clean-up with a traceback. A
    wait's deadline (SIGALRM, see ``talprov.processes.abandon_after``) is let go
    too. Main thread only; idempotent.

    Ignored by a handler that does nothing, not by SIG_IGN: a signal that came
    with the first one, before its handler ran, is still pending, and CPython
    reports a pending signal whose handler became SIG_IGN on stderr ("Signal 15
    ignored due to race condition"). ``for_exit``: SIG_IGN after all, for the
    interpreter's exit, which puts SIG_DFL back in place of Python handlers (a
    signal then would kill the process by that signal).
    """
    ignored = signal.SIG_IGN if for_exit else _already_stopping
    for signum in (*STOP_SIGNALS, signal.SIGALRM):
        signal.signal(signum, ignored)


def _already_stopping(_signum: int, _frame: object) -> None:
    """The handler of a stop signal while the process stops already: nothing."""


def _defer(signum: int, _frame: object) -> None:
    if not _deferred:  # the first one counts, as ever
        _deferred.append(signum)


def defer_stops() -> None:
    """From now on a SIGINT or SIGTERM is noted instead of raised: for a section
    that unwinds something already (a wait broken off at its deadline) and must
    not be broken off itself. :func:`raise_deferred_stop` raises the one noted,
    once the section is over and the stop handlers are back: ignoring it instead
    lost it (the command went on as if it had never been sent). Main thread only.
    """
    _deferred.clear()
    for signum in STOP_SIGNALS:
        signal.signal(signum, _defer)


def end_deferring(kept: Mapping[signal.Signals, Any]) -> None:
    """Put ``kept`` (signal number to handler, as read before :func:`defer_stops`)
    back for each stop signal still deferred, then :func:`raise_deferred_stop`.
    A signal whose handler is no longer the deferring one was handled meanwhile
    (a stop that came before :func:`defer_stops` swapped it ignores both signals
    from then on): putting the old handler back there would let a second signal
    break off the clean-up that stop began. Main thread only."""
    for signum, handler in kept.items():
        if handler is not None and signal.getsignal(signum) is _defer:
            signal.signal(signum, handler)
    raise_deferred_stop()


def raise_deferred_stop() -> None:
    """Raise the stop that came while stops were deferred (KeyboardInterrupt, or
    :class:`Terminated` for SIGTERM), ignoring both signals from then on as the
    first stop does; nothing when none came. Call after the stop handlers were put
    back, so that a signal between the two is either noted or raised, never lost.
    Idempotent."""
    if not _deferred:
        return
    signum = _deferred.pop()
    ignore_stop_signals()
    raise _interruption(signum)


def interrupted_exit_code(exc: BaseException) -> int:
    """128 + the signal that stopped a command, as shells expect: 143 for SIGTERM
    (:class:`Terminated`, also when it is the cause of ``exc``), else 130 (Ctrl-C)."""
    stopped_by_term = isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated)
    return 128 + (signal.SIGTERM if stopped_by_term else signal.SIGINT)


def interrupted_message(exc: BaseException, what: str | None = None) -> str:
    """``talprov: interrupted``, with `` (SIGTERM)`` when SIGTERM stopped the
    command, and ``: what`` when given (what a ``--wait`` leaves recorded)."""
    by = " (SIGTERM)" if interrupted_exit_code(exc) == 128 + signal.SIGTERM else ""
    return f"talprov: interrupted{by}" + (f": {what}" if what else "")


def end_echoed_line(exc: BaseException, *, line_open: bool = False) -> None:
    """Before the interruption's line: end the last line of a terminal that has
    something on it, the ``^C`` it echoed for Ctrl-C or a progress line written
    in place (``line_open``). A log or a pipe gets no blank line."""
    ctrl_c = interrupted_exit_code(exc) == 128 + signal.SIGINT
    if (line_open or ctrl_c) and _stderr_is_terminal():
        sys.stderr.write("\n")


#: The commands whose normal stop is SIGTERM (a service manager's): exit 0.
SIGTERM_STOPPED_COMMANDS = frozenset({"serve", "baremetal serve"})
#: Global options of ``talprov`` that take a value (``--config FILE``).
_VALUED_OPTIONS = frozenset({"--config", "--store", "--log-format"})
#: Command groups with a service among their commands, and their options that
#: take a value (``baremetal --file FILE serve``).
_GROUP_VALUED_OPTIONS = {"baremetal": frozenset({"-p", "--provider", "--file"})}
#: The command of this process, once known to stop on SIGTERM (at most one).
_stopped_by_sigterm: set[str] = set()


def command_word(argv: list[str]) -> str | None:
    """The command a ``talprov`` command line runs (its first word after the
    global options), or None. For the start-up, before click has parsed the
    line; a guess that errs towards None (then SIGTERM is an interruption).
    For a group's command that is one of :data:`SIGTERM_STOPPED_COMMANDS`, both
    words (``baremetal serve``). Pure."""
    args = iter(argv)
    word = _next_word(args, _VALUED_OPTIONS)
    group_options = _GROUP_VALUED_OPTIONS.get(word or "")
    if word is None or group_options is None:
        return word
    command = f"{word} {_next_word(args, group_options)}"
    return command if command in SIGTERM_STOPPED_COMMANDS else word


def _next_word(args: Iterator[str], valued: frozenset[str]) -> str | None:
    """The next word of ``args`` that is not an option (or a value of one of
    ``valued``), or None."""
    for arg in args:
        if arg == "--":
            return next(args, None)
        if arg in valued:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def sigterm_is_a_stop(command: str | None) -> None:
    """From now on, when ``command`` is one of :data:`SIGTERM_STOPPED_COMMANDS`, a
    SIGTERM that :func:`exit_interrupted` ends (while it starts up, even before it
    said it listens) is its graceful stop: "stopped", exit 0, not 143; a Ctrl-C
    says "stopped" too and exits 130, as it does once the service listens. For
    the process's entry point only (it holds for the rest of the process, and an
    in-process test runs several commands). Idempotent."""
    if command in SIGTERM_STOPPED_COMMANDS:
        _stopped_by_sigterm.add(command)


def exit_interrupted(exc: BaseException, *, line_open: bool = False) -> NoReturn:
    """Say :func:`interrupted_message` on stderr (on a line of its own, see
    :func:`end_echoed_line`), then exit with :func:`interrupted_exit_code`. The one
    way every talprov command ends on Ctrl-C or SIGTERM: one line, never a
    traceback. A command whose normal stop is SIGTERM (:func:`sigterm_is_a_stop`)
    says "stopped" instead, and exits 0 for SIGTERM (130 for Ctrl-C)."""
    end_echoed_line(exc, line_open=line_open)
    if _stopped_by_sigterm:
        # A service stopped while it starts stops as it does once it listens: the
        # same line for both signals (QA: Ctrl-C said "interrupted" before and
        # "stopped" after), and Ctrl-C's 130, as every talprov command's.
        sys.stderr.write("stopped\n")
        sys.stderr.flush()
        sys.exit(0 if interrupted_exit_code(exc) == 128 + signal.SIGTERM
                 else interrupted_exit_code(exc))
    sys.stderr.write(interrupted_message(exc) + "\n")
    sys.stderr.flush()
    sys.exit(interrupted_exit_code(exc))


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False
