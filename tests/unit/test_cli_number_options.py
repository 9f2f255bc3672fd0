"""QA: every number of seconds or things given as an option is checked when the
command line is read. ``inf``, ``nan``, ``-1`` or ``0`` ended in an OverflowError
or ValueError traceback (``--watch inf``: time.sleep), and ``reconcile --interval
0|-1|nan`` ran rounds without a pause. Now each is click's usage error (exit 2)
naming the option and the range it takes."""

from __future__ import annotations

import pytest

from tests.helpers import Home

#: (command line before the option, option, what its range is said as).
OPTIONS = [
    (("reconcile", "--once"), "--interval", "more than 0 and at most 300"),
    (("machine", "list"), "--watch", "from 0.5 to 86400"),
    (("status",), "--watch", "from 0.5 to 86400"),
    (("machine", "create", "-f", "r.yaml"), "--timeout", "more than 0 and at most 604800"),
    (("machine", "delete", "r1"), "--timeout", "more than 0 and at most 604800"),
    (("apply", "-f", "c.yaml"), "--timeout", "more than 0 and at most 604800"),
    (("destroy", "demo"), "--timeout", "more than 0 and at most 604800"),
    (("demo",), "--timeout", "more than 0 and at most 604800"),
]

BAD_SECONDS = ["inf", "-inf", "nan", "-1", "0", "1e400", "ten"]


@pytest.mark.parametrize(("words", "option", "range_said"), OPTIONS)
@pytest.mark.parametrize("value", BAD_SECONDS)
def test_seconds_out_of_range_are_a_usage_error_naming_the_option_and_its_range(
        home: Home, words: tuple[str, ...], option: str, range_said: str, value: str) -> None:
    result = home.invoke(*words, option, value)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"Invalid value for '{option}'" in result.output
    assert range_said in result.output
    assert repr(value) in result.output


def test_too_many_seconds_are_refused(home: Home) -> None:
    result = home.invoke("reconcile", "--once", "--interval", "300.5")
    assert result.exit_code == 2, result.output
    assert "at most 300" in result.output


def test_seconds_in_range_are_taken(home: Home) -> None:
    # service.reconcile_interval's bound (300) is reconcile --interval's too.
    result = home.invoke("reconcile", "--once", "--interval", "300")
    assert result.exit_code == 0, result.output
    result = home.invoke("machine", "list", "--watch", "0.5", "--help")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("option", ["--interval", "--watch", "--timeout"])
def test_help_says_the_range(home: Home, option: str) -> None:
    words = {"--interval": ("reconcile",), "--watch": ("machine", "list"),
             "--timeout": ("machine", "create")}[option]
    result = home.invoke(*words, "--help")
    assert result.exit_code == 0, result.output
    assert "at most" in result.output or "0.5 to 86400" in result.output
