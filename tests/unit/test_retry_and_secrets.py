"""Retry policy (bounded, jittered, honours Retry-After) and secret references."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from talprov.errors import ConfigError
from talprov.providers.errors import AuthError, Transient
from talprov.providers.retry import RetryPolicy, call_with_retry, step_backoff
from talprov.secrets import MASK, RedactingFilter, redact, resolve_refs, resolve_tree


def test_transient_errors_are_retried_until_success() -> None:
    sleeps: list[float] = []
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise Transient("throttled")
        return "ok"

    assert call_with_retry(flaky, sleep=sleeps.append, rng=random.Random(1)) == "ok"
    assert calls["n"] == 3
    assert len(sleeps) == 2


def test_a_call_that_succeeds_at_once_builds_no_retry_machinery(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Most calls succeed at once; building tenacity's Retrying and seeding a Random
    for each cost ~27 us, paid on every OpenStack read before."""
    from talprov.providers import retry

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("retry machinery built for a call that succeeded")

    monkeypatch.setattr(retry, "Retrying", refuse)
    monkeypatch.setattr(random, "Random", refuse)
    assert call_with_retry(lambda: "ok", sleep=lambda _s: None) == "ok"


def test_retries_are_bounded_and_reraise_last_error() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=4, initial=1, maximum=8, deadline=1000)

    def always() -> None:
        raise Transient("still throttled")

    with pytest.raises(Transient, match="still throttled"):
        call_with_retry(always, policy=policy, sleep=sleeps.append, rng=random.Random(2))
    assert len(sleeps) == 3
    assert all(0 <= s <= 8 for s in sleeps)


def test_retry_after_is_honoured() -> None:
    sleeps: list[float] = []
    calls = {"n": 0}

    def slow_down() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Transient("429", retry_after=12.0)
        return 1

    call_with_retry(slow_down, sleep=sleeps.append, rng=random.Random(3))
    assert sleeps == [12.0]


def test_a_retry_after_above_the_maximum_is_left_to_the_steps_backoff() -> None:
    """A call slept any Retry-After (up to 300 s from a proxy) inside the call,
    holding a worker thread; now it re-raises at once, and the step's backoff
    (which holds no thread) waits at least as long."""
    sleeps: list[float] = []
    calls = {"n": 0}

    def busy() -> int:
        calls["n"] += 1
        raise Transient("503", retry_after=42.0)

    with pytest.raises(Transient) as caught:
        call_with_retry(busy, sleep=sleeps.append, rng=random.Random(3))
    assert (calls["n"], sleeps, caught.value.retry_after) == (1, [], 42.0)
    assert step_backoff(1, caught.value.retry_after) >= 42.0


def test_permanent_errors_are_not_retried() -> None:
    sleeps: list[float] = []

    def denied() -> None:
        raise AuthError("bad key")

    with pytest.raises(AuthError):
        call_with_retry(denied, sleep=sleeps.append)
    assert sleeps == []


def test_step_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(4)
    values = [step_backoff(n, None, base=2, cap=60, rng=rng) for n in range(1, 10)]
    assert 1 <= values[0] <= 2
    assert 4 <= values[2] <= 8
    assert all(v <= 60 for v in values)
    assert values[-1] >= 30
    assert step_backoff(1, 120, base=2, cap=60, rng=rng) == 120


def test_env_and_file_references_resolve_and_are_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TP_TEST_TOKEN", "s3cr3t-token-value")
    (tmp_path / "pw").write_text("file-password-123\n")
    tree = resolve_tree({"a": "${env:TP_TEST_TOKEN}", "b": ["${file:pw}"]},
                        where="cfg", base_dir=tmp_path)
    assert tree == {"a": "s3cr3t-token-value", "b": ["file-password-123"]}
    assert redact("token=s3cr3t-token-value pw=file-password-123") == f"token={MASK} pw={MASK}"


def test_unset_reference_names_field_not_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TP_NOPE", raising=False)
    with pytest.raises(ConfigError) as info:
        resolve_refs("x${env:TP_NOPE}", where="talprov.yaml: providers.a.password")
    assert str(info.value) == (
        "talprov.yaml: providers.a.password: environment variable TP_NOPE is not set"
    )


def test_logging_filter_masks_registered_secrets(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TP_LOG_SECRET", "log-secret-abcdef")
    resolve_refs("${env:TP_LOG_SECRET}", where="w")
    logger = logging.getLogger("talprov.test.redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="talprov.test.redact"):
        logger.info("connecting with %s", "log-secret-abcdef")
    assert "log-secret-abcdef" not in caplog.text
    assert MASK in caplog.text


@pytest.mark.parametrize("text", ["${envv:X}", "${env:X", "prefix-${file:}"])
def test_a_malformed_reference_is_refused_not_used_as_the_secret(text: str) -> None:
    with pytest.raises(ConfigError, match=r"starts no secret reference"):
        resolve_refs(text, where="providers.p.token_secret")
