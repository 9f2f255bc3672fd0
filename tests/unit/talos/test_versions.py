"""Talos versions: strict parsing at request time, the rules line a version gets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from talprov.providers.errors import InvalidRequest
from talprov.providers.types import MachineRequest
from talprov.talos.versions import (
    DEFAULT_TALOS_VERSION,
    SUPPORTED_LINES,
    TalosVersion,
    parse_version,
    rules_line,
    unknown_version_warning,
)


def _request(version: str) -> MachineRequest:
    return MachineRequest.model_validate(
        {"id": "m1", "provider": "lab", "talos_version": version})


@pytest.mark.parametrize("version", [
    "v1.13.9", "v1.9.0", "v1.14.0", "v1.11.0-alpha.3", "v1.12.0-beta.0", "v1.13.0-rc.1"])
def test_talos_tags_are_accepted(version: str) -> None:
    assert _request(version).talos_version == version
    assert str(parse_version(version)) == version


# Each of these passed the old pattern (v\d+.\d+.\d+(-[0-9A-Za-z.-]+)?) except the first
# two, and names a path the Image Factory's semver parser refuses.
@pytest.mark.parametrize("version", [
    "v1.13", "1.13.9", "v1.13.09", "v01.13.9", "v1.13.9-", "v1.13.9-.", "v1.13.9-rc..1",
    "v1.13.9-01"])
def test_malformed_versions_fail_at_request_time_with_one_message(version: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _request(version)
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [("talos_version",)]
    with pytest.raises(InvalidRequest, match=r"^talos_version: "):
        parse_version(version)


def test_default_is_the_latest_stable_release_and_a_known_line() -> None:
    default = parse_version(DEFAULT_TALOS_VERSION)
    assert default == TalosVersion(1, 13, 9)
    assert default.line == SUPPORTED_LINES[-1]
    assert SUPPORTED_LINES == ((1, 9), (1, 10), (1, 11), (1, 12), (1, 13))


def test_an_unknown_newer_version_gets_the_newest_rules_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    version = parse_version("v1.14.0")
    assert rules_line(version) == (1, 13)
    assert "v1.14" in str(unknown_version_warning(version))
    # Logged once per line and process: a line no other test asks for.
    with caplog.at_level(logging.WARNING, logger="talprov.talos.versions"):
        assert rules_line(parse_version("v1.99.0")) == (1, 13)
    assert "v1.99" in caplog.text
    assert "v1.13" in caplog.text
    assert unknown_version_warning(parse_version("v1.11.5")) is None


def test_known_lines_use_their_own_rules_and_prereleases_compare_as_their_release() -> None:
    assert rules_line(parse_version("v1.10.9")) == (1, 10)
    assert rules_line(parse_version("v1.8.3")) == (1, 9)
    assert parse_version("v1.11.0-alpha.3").at_least(1, 11, 0)
    assert not parse_version("v1.11.0").at_least(1, 11, 1)


def test_a_request_file_for_an_unknown_line_is_read_with_a_warning(
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    from talprov.requestfile import parse_request

    raw = {"id": "m1", "provider": "lab", "talos_version": "v1.98.0"}
    with caplog.at_level(logging.WARNING, logger="talprov.talos.versions"):
        request = parse_request(raw, where="r.yaml", base_dir=tmp_path)
    assert request.talos_version == "v1.98.0"
    assert "v1.98" in caplog.text
