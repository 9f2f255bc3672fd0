"""An Image Factory with authentication names a schematic with its owner in it.

The factory's Enterprise edition (siderolabs/image-factory
``internal/frontend/http/configuration.go``, ``handleSchematicCreate``) sets the
schematic's ``owner`` to the HTTP Basic user before hashing, so its id can never
equal the one computed locally; it answers ``{"id", "schematic"}`` with the
normalized text (``owner:`` first), whose sha256 is the id. The stand-in
(tests/emulators/factory.py with ``users``) behaves the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from talprov.providers.errors import AuthError
from talprov.talos.factory import ImageFactory, SchematicIdMismatch
from talprov.talos.schematic import Schematic
from tests.emulators.factory import EMPTY_SCHEMATIC_ID, FakeImageFactory
from tests.emulators.factory import image_factory as image_factory  # noqa: PLC0414 - fixture

SCHEMATIC = Schematic(extra_kernel_args=("console=ttyS0",),
                      official_extensions=("siderolabs/iscsi-tools",))
OWNED_TEXT = "owner: alice\n" + SCHEMATIC.canonical_yaml().decode()
OWNED_ID = hashlib.sha256(OWNED_TEXT.encode()).hexdigest()


@pytest.fixture
def authenticated(image_factory: FakeImageFactory) -> FakeImageFactory:
    image_factory.users = {"alice": "s3cret-factory-pw", "bob": "other-pw"}
    return image_factory


def test_credentials_in_the_url_count_as_configured(
    authenticated: FakeImageFactory, tmp_path: Path,
) -> None:
    # Before, a factory URL with credentials failed every request with SchematicIdMismatch.
    url = authenticated.url.replace("http://", "http://alice:s3cret-factory-pw@")
    with ImageFactory(url, tmp_path) as client:
        assert client.register(SCHEMATIC) == OWNED_ID
        assert "s3cret-factory-pw" not in repr(client)


def test_configured_credentials_use_and_record_the_factorys_id(
    authenticated: FakeImageFactory, tmp_path: Path,
) -> None:
    with ImageFactory(authenticated.url, tmp_path,
                      auth=("alice", "s3cret-factory-pw")) as client:
        assert client.register(SCHEMATIC) == OWNED_ID
        assert client.register(SCHEMATIC) == OWNED_ID
        assert authenticated.hits["/schematics"] == 1
        assert client.answered_id(SCHEMATIC) == OWNED_ID
        assert authenticated.owners == {OWNED_ID: "alice"}
        # Its images are served to the owner, through the same credentials.
        url = client.image_url(OWNED_ID, "v1.11.5", "metal", "amd64")
        assert client.download(url).stat().st_size > 0
        assert "s3cret-factory-pw" not in repr(client)


def test_another_schematic_than_ours_is_still_refused(
    authenticated: FakeImageFactory, tmp_path: Path,
) -> None:
    authenticated.id_override = "0" * 64  # answers an id that is not sha256 of its text
    client = ImageFactory(authenticated.url, tmp_path, auth=("alice", "s3cret-factory-pw"))
    with client, pytest.raises(SchematicIdMismatch):
        client.register(SCHEMATIC)


def test_wrong_credentials_are_an_auth_error(
    authenticated: FakeImageFactory, tmp_path: Path,
) -> None:
    client = ImageFactory(authenticated.url, tmp_path, auth=("alice", "wrong"))
    with client, pytest.raises(AuthError) as caught:
        client.register(SCHEMATIC)
    assert "wrong" not in str(caught.value)


def test_another_users_schematic_is_not_served(
    authenticated: FakeImageFactory, tmp_path: Path,
) -> None:
    with ImageFactory(authenticated.url, tmp_path / "a",
                      auth=("alice", "s3cret-factory-pw")) as alice:
        owned = alice.register(SCHEMATIC)
    with ImageFactory(authenticated.url, tmp_path / "b", auth=("bob", "other-pw")) as bob:
        assert bob.register(SCHEMATIC) != owned
        # The factory answers 403 (its ownership rule), as for an id without owner.
        for other in (owned, EMPTY_SCHEMATIC_ID):
            with pytest.raises(AuthError):
                bob.download(bob.image_url(other, "v1.11.5", "metal", "amd64"))


def test_credentials_go_to_the_factory_only(tmp_path: Path) -> None:
    import httpx

    seen: dict[str, str | None] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("Authorization")
        if request.url.path == "/schematics":
            return httpx.Response(201, json={"id": SCHEMATIC.id()})
        return httpx.Response(200, stream=httpx.ByteStream(b"[]"))

    with ImageFactory("https://factory.example.test", tmp_path, auth=("alice", "pw"),
                      cloud_images_url="https://releases.example.test/{version}/c.json",
                      transport=httpx.MockTransport(answer)) as client:
        client.register(SCHEMATIC)
        client.cloud_images("v1.11.5")
    assert seen["factory.example.test"] == "Basic YWxpY2U6cHc="  # alice:pw
    assert seen["releases.example.test"] is None


def test_talprov_yaml_gives_the_runtime_its_factory_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from talprov.cli.app import App
    from talprov.config import load_config
    from talprov.errors import ConfigError

    monkeypatch.setenv("TP_FACTORY_PW", "pw-from-env-93a1")
    path = tmp_path / "talprov.yaml"
    path.write_text("image_factory:\n  url: https://factory.example.test\n"
                    "  username: team-a\n  password: ${env:TP_FACTORY_PW}\n")
    app = App(config_path=str(path), store_url=None)
    assert app.runtime.factory_auth == ("team-a", "pw-from-env-93a1")
    assert "pw-from-env-93a1" not in repr(app.runtime) + repr(load_config(str(path)))

    path.write_text("image_factory:\n  username: team-a\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert "image_factory" in caught.value.where
    assert "go together" in caught.value.message


def test_credentials_in_the_url_never_end_up_in_an_asset_url(
    authenticated: FakeImageFactory, tmp_path: Path,
) -> None:
    """Before, a factory URL with credentials written in it named every asset with
    them: `image urls` printed the password, Proxmox got it in its download-url
    task and a bare-metal machine in its iPXE script. The client now takes them as
    its credentials and names assets by the bare URL."""
    url = authenticated.url.replace("http://", "http://alice:s3cret-factory-pw@")
    with ImageFactory(url, tmp_path) as client:
        owned = client.register(SCHEMATIC)
        asset = client.image_url(owned, "v1.11.5", "metal", "amd64")
        script = client.pxe_script_url(owned, "v1.11.5", "amd64")
        assert asset.startswith(authenticated.url + "/image/")
        assert script.startswith(authenticated.url + "/pxe/")
        assert client.base_url == authenticated.url
        # Still authenticated: the owner's image downloads through the bare URL.
        assert client.download(asset).stat().st_size > 0
