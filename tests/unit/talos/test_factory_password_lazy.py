"""An unset ``image_factory.password`` reference stops only what needs the Image
Factory (QA: every command that built providers failed with exit 2, ``machine
delete`` and a ``reconcile`` with nothing to create too)."""

from __future__ import annotations

import pytest

from talprov.cli.app import App
from talprov.providers.errors import InstanceUnavailable
from talprov.talos.factory import images_for
from tests.helpers import Home


@pytest.fixture
def unset_password(home: Home, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.delenv("IFPW_UNSET", raising=False)
    home.write_config(image_factory={"url": "https://factory.example.test",
                                     "username": "u", "password": "${env:IFPW_UNSET}"})
    return home


def test_commands_that_need_no_image_work_without_the_password(unset_password: Home) -> None:
    home = unset_password
    created = home.invoke("machine", "create", "-f", str(home.write_request("r-1")))
    assert created.exit_code == 0, created.output
    reconciled = home.invoke("reconcile", "--once")
    assert reconciled.exit_code == 0, reconciled.output
    deleted = home.invoke("machine", "delete", "r-1")
    assert deleted.exit_code == 0, deleted.output
    assert home.invoke("reconcile", "--once").exit_code == 0


def test_the_first_use_of_the_factory_fails_naming_the_setting(unset_password: Home) -> None:
    app = App(config_path=str(unset_password.config_path), store_url=None)
    runtime = app.runtime  # built without the password
    assert runtime.factory_url == "https://factory.example.test"
    assert runtime.factory_auth is None
    for _ in range(2):  # every use says it again; nothing half-built is kept
        with pytest.raises(InstanceUnavailable) as caught:
            images_for(runtime)
        message = str(caught.value)
        assert "image_factory.password" in message
        assert "IFPW_UNSET" in message
    assert not caught.value.permanent  # a request waits for the operator's fix


def test_the_bare_metal_commands_work_without_the_password(
        unset_password: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    # Review: `talprov baremetal ...` resolved the whole image_factory block for its
    # URL, so every one of them stopped at the unset password (exit 2).
    home = unset_password
    home.providers["bm"] = {"type": "baremetal", "inventory": str(home.root / "inv.sqlite"),
                            "boot_url": "http://127.0.0.1:8081"}
    home.write_config(image_factory={"url": "https://factory.example.test",
                                     "username": "u", "password": "${env:IFPW_UNSET}"})
    listed = home.invoke("baremetal", "list")
    assert listed.exit_code == 0, listed.output
    # A URL that is itself a reference is still resolved, and named when it cannot be.
    monkeypatch.delenv("IFURL_UNSET", raising=False)
    home.write_config(image_factory={"url": "${env:IFURL_UNSET}", "username": "u",
                                     "password": "${env:IFPW_UNSET}"})
    unresolved = home.invoke("baremetal", "list")
    assert unresolved.exit_code == 2, unresolved.output
    assert "IFURL_UNSET" in unresolved.output


def test_a_runtime_without_the_password_still_gets_the_resolved_url(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    # Review: the fallback took the block as written, so a URL given as a reference
    # reached the boot server and asset URLs as the text '${env:...}'.
    monkeypatch.delenv("IFPW_UNSET", raising=False)
    monkeypatch.setenv("IFURL_SET", "https://mirror.example.test")
    home.write_config(image_factory={"url": "${env:IFURL_SET}", "username": "u",
                                     "password": "${env:IFPW_UNSET}"})
    runtime = App(config_path=str(home.config_path), store_url=None).runtime
    assert runtime.factory_url == "https://mirror.example.test"
    assert runtime.factory_verify_tls is True
    with pytest.raises(InstanceUnavailable):
        images_for(runtime)
