"""Every pattern a person's input is checked against is told in words (QA: ids, set
names and talos_version answered with the regular expression)."""

from __future__ import annotations

import pytest

from talprov.errors import pattern_in_words
from talprov.providers.labels import LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN
from talprov.providers.types import REQUEST_ID_PATTERN
from talprov.scaler.models import CLUSTER_NAME_PATTERN, NAME_PATTERN
from talprov.service.models import SET_NAME_PATTERN
from talprov.service.routes_requests import NO_NUL


@pytest.mark.parametrize(("pattern", "words"), [
    (REQUEST_ID_PATTERN, "at most 63 characters"),
    (NAME_PATTERN, "at most 63 characters"),
    (CLUSTER_NAME_PATTERN, "at most 42 characters"),
    (SET_NAME_PATTERN, "at most 52 characters"),
    (LABEL_KEY_PATTERN, "at most 255 characters"),
    (LABEL_VALUE_PATTERN, "at most 1024 characters"),
    (NO_NUL, "NUL"),
])
def test_each_pattern_is_told_in_words(pattern: str, words: str) -> None:
    told = pattern_in_words(pattern)
    assert words in told
    assert "^" not in told
    assert "must match" not in told


def test_an_unknown_pattern_is_still_named() -> None:
    assert pattern_in_words("^x+$") == "must match ^x+$"
