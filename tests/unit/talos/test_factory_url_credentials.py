"""Image Factory credentials written into ``image_factory.url``: refused when they
cannot be read as credentials, kept out of every repr, and a URL without them left
exactly as written (reviewer's findings on the factory-credentials work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from talprov.baremetal.boot.server import BootServer
from talprov.baremetal.config import BareMetalConfig
from talprov.cli.app import App
from talprov.talos.factory import ImageFactory, asset_names_for, split_credentials
from tests.helpers import Home
from tests.unit.test_cli import assert_usage_error

PASSWORD = "s3cret-Factory-pw"


@pytest.mark.parametrize("char", ["#", "/", "?"])
def test_a_password_with_an_unencoded_delimiter_is_refused_naming_the_field(
    home: Home, char: str,
) -> None:
    """Before, ``https://team:2024#Secret@factory.example.com`` passed the check (read
    as host ``team``, port 2024), no credentials were found and the URL, password
    and all, went into asset URLs."""
    home.write_config(image_factory={"url": f"https://team:2024{char}Secret@factory.example.com"})
    for command in (("config", "check"), ("providers",)):
        result = home.invoke(*command)
        assert_usage_error(result.exit_code, result.output, "image_factory.url", "percent-encode")
        assert "Secret" not in result.output


@pytest.mark.parametrize(("url", "words"), [
    ("https://:pw@factory.example.com", "password without a user name"),
    ("https://team:p@ss@factory.example.com", "percent-encode"),
])
def test_userinfo_that_is_not_a_user_and_password_is_refused(
    home: Home, url: str, words: str,
) -> None:
    """Before, a password without a user was dropped without a word."""
    home.write_config(image_factory={"url": url})
    result = home.invoke("config", "check")
    assert_usage_error(result.exit_code, result.output, "image_factory.url", words)


def test_credentials_both_in_the_url_and_as_username_are_refused(home: Home) -> None:
    """Which pair wins was said nowhere; now the config says one place only."""
    home.write_config(image_factory={"url": "https://alice:pw@factory.example.com",
                                     "username": "bob", "password": "other"})
    for command in (("config", "check"), ("providers",)):
        result = home.invoke(*command)
        assert_usage_error(result.exit_code, result.output, "image_factory.url", "username")


@pytest.mark.parametrize("url", [
    "https://Factory.Example.COM:443/mirror/",
    "https://xn--bcher-kva.example/",
    "https://factory.talos.dev",
])
def test_a_url_without_credentials_is_left_as_written(url: str) -> None:
    """Before, every URL went through httpx.URL (host lower-cased, :443 dropped):
    Proxmox's ISO names and the download cache's keys are hashes of it, so an
    upgrade downloaded every ISO again and orphaned the old ones."""
    assert split_credentials(url) == (url.rstrip("/"), None)


def test_percent_encoded_user_and_password_are_decoded_and_the_host_kept() -> None:
    bare, auth = split_credentials("https://te%40m:p%3Aw%40%23@Factory.Example.COM:443/m/")
    assert bare == "https://Factory.Example.COM:443/m"
    assert auth == ("te@m", "p:w@#")


def test_no_repr_shows_credentials_written_into_the_url(home: Home) -> None:
    """Before, Runtime.factory_url and BootServer.factory_url kept the password."""
    home.write_config(image_factory={"url": f"https://team:{PASSWORD}@factory.example.com"})
    app = App(config_path=str(home.config_path), store_url=None)
    runtime = app.runtime
    assert runtime.factory_url == "https://factory.example.com"
    assert runtime.factory_auth == ("team", PASSWORD)
    config = BareMetalConfig(inventory=str(home.root / "inventory.db"),
                             boot_url="http://10.0.0.5:8081")
    server = BootServer(config, f"https://team:{PASSWORD}@factory.example.com")
    assert server.factory_auth == ("team", PASSWORD)
    client = asset_names_for(runtime)
    for shown in (repr(runtime), str(runtime), repr(server), str(server), repr(client)):
        assert PASSWORD not in shown
        assert "team" not in shown


@pytest.mark.parametrize(("base", "pxe", "auth"), [
    ("https://a:1@f.example", "https://b:2@p.example", None),
    ("https://a:1@f.example", None, ("b", "2")),
])
def test_different_credentials_in_the_clients_urls_are_refused(
    tmp_path: Path, base: str, pxe: str | None, auth: tuple[str, str] | None,
) -> None:
    """Before, the first of auth, base_url's and pxe_base_url's credentials won silently."""
    with pytest.raises(ValueError, match="differ") as caught:
        ImageFactory(base, tmp_path, pxe_base_url=pxe, auth=auth)
    assert "1" not in str(caught.value)
    assert "2" not in str(caught.value)


def test_the_same_credentials_given_twice_are_taken(tmp_path: Path) -> None:
    with ImageFactory("https://a:1@f.example", tmp_path, auth=("a", "1")) as client:
        assert client.authenticated
        assert client.base_url == "https://f.example"
