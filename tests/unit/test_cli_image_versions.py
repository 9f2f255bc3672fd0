"""``talprov image urls`` checks --version against the Image Factory's list
(QA: it printed URLs for v9.9.9, a Talos version that does not exist).

Asked when the factory answers (its GET /versions); with --local no factory is
asked, and stderr says the version was not checked.
"""

from __future__ import annotations

import json

from click.testing import Result

from tests.emulators.factory import FakeImageFactory
from tests.emulators.factory import image_factory as image_factory  # noqa: PLC0414 - fixture
from tests.helpers import Home


def urls(home: Home, version: str, *extra: str) -> Result:
    schematic = home.root / "schematic.yaml"
    schematic.write_text("{}\n")
    return home.invoke("image", "urls", "-f", str(schematic), "--version", version,
                       "-o", "json", *extra)


def test_a_version_the_factory_does_not_offer_is_refused(
        home: Home, image_factory: FakeImageFactory) -> None:
    home.write_config(image_factory={"url": image_factory.url})
    result = urls(home, "v9.9.9")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    [line] = result.output.splitlines()
    assert line.startswith("talprov: error: --version: "), line
    assert f"the Image Factory {image_factory.url} does not offer Talos v9.9.9" in line
    assert "--local" in line
    assert image_factory.hits["/versions"] == 1


def test_an_offered_version_lists_its_urls(home: Home,
                                           image_factory: FakeImageFactory) -> None:
    home.write_config(image_factory={"url": image_factory.url})
    result = urls(home, "v1.12.4")
    assert result.exit_code == 0, result.output
    assert "/v1.12.4/aws-amd64.raw.xz" in result.stdout
    assert "not checked" not in result.output
    assert image_factory.hits["/versions"] == 1


def test_local_asks_no_factory_and_says_the_version_was_not_checked(
        home: Home, image_factory: FakeImageFactory) -> None:
    home.write_config(image_factory={"url": image_factory.url})
    result = urls(home, "v9.9.9", "--local")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert any(r["url"].endswith("/v9.9.9/aws-amd64.raw.xz") for r in rows)
    assert "Talos v9.9.9 was not checked" in result.stderr
    assert sum(image_factory.hits.values()) == 0


def test_a_factory_that_cannot_be_asked_is_said_and_the_urls_are_still_listed(
        home: Home) -> None:
    home.write_config(image_factory={"url": "http://127.0.0.1:9"})
    result = urls(home, "v1.13.9")
    assert result.exit_code == 0, result.output
    assert "/v1.13.9/aws-amd64.raw.xz" in result.stdout
    assert "Talos v1.13.9 was not checked" in result.stderr
    assert "unreachable" in result.stderr


def test_refused_credentials_name_the_setting_in_every_image_command(
        home: Home, image_factory: FakeImageFactory) -> None:
    # QA: image urls/id/pull said "credentials refused: schematic ...: the Image
    # Factory refused access (HTTP 401)" where config check --connect names the
    # setting to fix.
    image_factory.users = {"team-a": "right-pw-81c"}
    home.write_config(image_factory={"url": image_factory.url, "username": "team-a",
                                     "password": "wrong-pw-3f9"})
    schematic = home.root / "schematic.yaml"
    schematic.write_text("{}\n")
    for command in (("urls", "--version", "v1.12.4"), ("id",),
                    ("pull", "--version", "v1.12.4", "--asset", "aws-disk")):
        result = home.invoke("image", command[0], "-f", str(schematic), *command[1:])
        assert result.exit_code == 2, (command, result.output)
        assert "image_factory.password" in result.output, (command, result.output)
        assert "refused the credentials" in result.output, (command, result.output)
        assert "wrong-pw-3f9" not in result.output
