"""A ``ca_file`` that cannot be used, and TLS settings that contradict each other, are
config errors on load: exit 2, one line naming the file and the key, for every
command that reads the config (README: "Every command checks the whole file on load").

QA before: a vSphere instance with ``ca_file: /nonexist.pem`` (or an empty or
non-PEM file) made ``config check``, ``providers --health`` and ``reconcile --once``
print a traceback (FileNotFoundError, ssl.SSLError NO_CERTIFICATE_OR_CRL_FOUND) and
exit 1; an OpenStack one passed ``config check`` and crashed ``machine create
--wait``; ``insecure: true`` with ``ca_file`` and a password reference passed
``machine list`` and ``providers`` (exit 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, model_validator

from talprov.config import validate_unresolved
from talprov.errors import ConfigError
from tests.helpers import Home
from tests.unit.autoscaler.certs import Authority
from tests.unit.test_cli import assert_usage_error
from tests.unit.test_config_checked_early import assert_refused_only_where_used

CLOSED = "https://127.0.0.1:9"
#: One block of every type that has a ca_file; the password is a reference, as the
#: README asks for, so that rules over the whole block are judged before it resolves.
BLOCKS: dict[str, dict[str, Any]] = {
    "vmware": {"type": "vmware", "url": CLOSED, "username": "u", "password": "${env:QA_PW}"},
    "proxmox": {"type": "proxmox", "url": CLOSED, "token_id": "root@pam!t",
                "token_secret": "${env:QA_PW}"},
    "openstack": {"type": "openstack", "auth": {
        "auth_url": CLOSED + "/v3", "username": "u", "password": "${env:QA_PW}",
        "project_name": "p"}},
}
COMMANDS = [("config", "check"), ("config", "check", "-o", "json"), ("providers",),
            ("providers", "--health"), ("machine", "list"), ("reconcile", "--once")]


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_PW", "p" * 12)


def bad_ca_files(root: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of unusable ca_file and the words its error says."""
    empty = root / "empty.pem"
    empty.write_text("")
    text = root / "notes.pem"
    text.write_text("this is not a certificate\n")
    return {"missing": (root / "nonexist.pem", "no such file"),
            "empty": (empty, "no PEM certificate"),
            "not-pem": (text, "no PEM certificate"),
            "directory": (root, "a directory")}


@pytest.mark.parametrize("kind", ["missing", "empty", "not-pem", "directory"])
@pytest.mark.parametrize("type_name", sorted(BLOCKS))
def test_an_unusable_ca_file_is_refused_on_load(home: Home, type_name: str, kind: str) -> None:
    path, words = bad_ca_files(home.root)[kind]
    home.providers["x"] = {**BLOCKS[type_name], "ca_file": str(path)}
    home.write_config()
    for command in COMMANDS:
        result = home.invoke(*command)
        assert_usage_error(result.exit_code, result.output, "providers.x.ca_file",
                           str(path), words)


def test_awss_ca_bundle_path_is_checked_as_a_ca_file(home: Home) -> None:
    home.providers["x"] = {"type": "aws", "region": "eu-west-1",
                           "verify_tls": str(home.root / "nonexist.pem")}
    home.write_config()
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, "providers.x.verify_tls",
                       "no such file")


def test_a_ca_file_given_as_a_reference_is_checked_when_resolved(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolved only for the commands that use the instance, as every reference is;
    ``config check`` says it in the instance's row, as it says an unset variable."""
    monkeypatch.setenv("QA_CA", str(home.root / "nonexist.pem"))
    home.providers["x"] = {**BLOCKS["vmware"], "ca_file": "${env:QA_CA}"}
    home.write_config()
    assert_refused_only_where_used(home, "x", "providers.x.ca_file", "no such file")


def test_the_image_factorys_ca_file_is_checked_on_load(home: Home) -> None:
    home.write_config(image_factory={"url": "https://factory.example.test",
                                     "ca_file": str(home.root / "nonexist.pem")})
    for command in (("machine", "list"), ("config", "check")):
        result = home.invoke(*command)
        assert_usage_error(result.exit_code, result.output, "image_factory.ca_file",
                           "no such file")


def a_ca_file(root: Path) -> Path:
    """A PEM file holding one CA certificate."""
    pem = root / "ca.pem"
    pem.write_bytes(Authority("qa-ca").pem.cert)
    return pem


def test_a_usable_ca_file_passes(home: Home) -> None:
    pem = a_ca_file(home.root)
    home.providers["x"] = {**BLOCKS["vmware"], "ca_file": str(pem)}
    home.write_config()
    result = home.invoke("machine", "list")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("type_name", "words"), [
    ("vmware", "insecure cannot be combined with ca_file"),
    ("proxmox", "ca_file, fingerprint and insecure exclude one another"),
    ("openstack", "insecure and ca_file contradict each other"),
])
def test_insecure_with_a_ca_file_is_refused_by_every_command(
        home: Home, type_name: str, words: str) -> None:
    pem = a_ca_file(home.root)
    home.providers["x"] = {**BLOCKS[type_name], "ca_file": str(pem), "insecure": True}
    home.write_config()
    for command in (("machine", "list"), ("providers",), ("config", "check")):
        result = home.invoke(*command)
        assert_usage_error(result.exit_code, result.output, "providers.x", words)


class _Login(BaseModel):
    """A block with one rule over which settings are given and one over a value."""

    token: str
    insecure: bool = False
    ca_file: str | None = None

    @model_validator(mode="after")
    def _rules(self) -> _Login:
        if self.insecure and self.ca_file:
            raise ValueError("insecure and ca_file contradict each other")
        if len(self.token) < 32:
            raise ValueError("token is shorter than 32 characters")
        return self


def test_the_image_factory_refuses_insecure_with_a_ca_file(home: Home) -> None:
    pem = a_ca_file(home.root)
    home.write_config(image_factory={"url": "https://factory.example.test",
                                     "ca_file": str(pem), "insecure": True})
    result = home.invoke("machine", "list")
    assert_usage_error(result.exit_code, result.output, "image_factory",
                       "insecure and ca_file contradict each other")


def test_a_rule_over_a_referenced_value_still_waits_for_the_value() -> None:
    """``${env:T}`` is short; the token it stands for need not be: judged once
    resolved. Which settings are given does not wait for any value."""
    validate_unresolved(_Login, {"token": "${env:T}"}, "f: providers.x")
    with pytest.raises(ConfigError, match="insecure and ca_file contradict"):
        validate_unresolved(_Login, {"token": "${env:T}", "insecure": True,
                                     "ca_file": "/ca.pem"}, "f: providers.x")
