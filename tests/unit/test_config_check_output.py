"""`talprov config check -o json|yaml` answers in that format even when the file
itself does not load (issue 14: output scripts can read).

Before: a YAML error or a missing file printed plain text and no JSON at all.
"""

from __future__ import annotations

import json

import pytest
import yaml

from talprov.testing.factory import FakeImageFactory
from tests.helpers import Home
from tests.unit.autoscaler.certs import Authority


@pytest.mark.parametrize(("text", "key", "words"), [
    ("providers: {fake: [\n", "line 2, column 1", "not valid YAML"),
    ("stores: x\n", "stores", "did you mean 'store'?"),
    ("- just\n- a list\n", None, "mapping"),
])
def test_a_file_that_does_not_load_is_reported_in_json(
    home: Home, text: str, key: str | None, words: str
) -> None:
    home.config_path.write_text(text)
    result = home.invoke("config", "check", "-o", "json")
    assert result.exit_code == 2, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert row["file"] == str(home.config_path)
    assert row["key"] == key
    assert words in row["error"]
    assert row["result"].startswith(str(home.config_path))
    assert "Traceback" not in result.output


def test_a_missing_file_is_reported_in_yaml(home: Home) -> None:
    home.config_path.unlink()
    result = home.invoke("config", "check", "-o", "yaml")
    assert result.exit_code == 2, result.output
    row = yaml.safe_load(result.stdout)[0]
    assert row["file"] == str(home.config_path)
    assert row["key"] is None
    assert "No such file" in row["error"]


def test_the_table_form_keeps_the_one_error_line(home: Home) -> None:
    home.config_path.write_text("stores: x\n")
    result = home.invoke("config", "check")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "talprov: error:" in result.stderr


ROW_KEYS = {"part", "type", "result", "file", "key", "error", "warning"}


def test_every_row_has_the_keys_of_the_file_row(home: Home,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """QA: the service row (and the others) lacked `file`, `key` and `error`, which
    the row of a file that does not load has: a script had to know which row it read."""
    monkeypatch.delenv("TP_QA_UNSET", raising=False)
    monkeypatch.setenv("TALPROV_STORE_KEY", "a" * 40)
    home.providers["broken"] = {**home.providers["fake"], "api_secret": "${env:TP_QA_UNSET}"}
    home.write_config(service={"tokens": [], "workers": False})
    result = home.invoke("config", "check", "-o", "json")
    assert result.exit_code == 2, result.output
    rows = {row["part"]: row for row in json.loads(result.stdout)}
    assert {"service", "TALPROV_STORE_KEY", "providers.fake", "providers.broken"} <= set(rows)
    for row in rows.values():
        assert set(row) == ROW_KEYS, row
    config = str(home.config_path)
    assert rows["service"]["file"] == config
    assert rows["service"]["key"] == "service.tokens"
    assert "no tokens configured" in rows["service"]["error"]
    assert rows["providers.broken"]["file"] == config
    assert rows["providers.broken"]["key"] == "providers.broken.api_secret"
    assert "TP_QA_UNSET is not set" in rows["providers.broken"]["error"]
    # The key comes from the environment, not from a file.
    assert rows["TALPROV_STORE_KEY"]["file"] is None
    assert rows["TALPROV_STORE_KEY"]["key"] == "TALPROV_STORE_KEY"
    assert "is not random" in rows["TALPROV_STORE_KEY"]["error"]
    # A row that is well has no error, and names the part it checked.
    assert rows["providers.fake"]["error"] is None
    assert rows["providers.fake"]["key"] == "providers.fake"
    assert rows["providers.fake"]["file"] == config


def test_connect_asks_the_image_factory_whether_it_answers(
        home: Home, image_factory: FakeImageFactory) -> None:
    # QA: `config check --connect` said "image_factory ok" for https://127.0.0.1:9.
    home.write_config(image_factory={"url": image_factory.url})
    ok = home.invoke("config", "check", "--connect", "-o", "json")
    assert ok.exit_code == 0, ok.output
    row = next(r for r in json.loads(ok.stdout) if r["part"] == "image_factory")
    assert row["result"] == "ok: answers, 5 Talos versions offered", row
    assert image_factory.hits["/versions"] >= 1

    image_factory.fail_next("/versions", 503)
    failing = home.invoke("config", "check", "--connect", "-o", "json")
    assert failing.exit_code == 1, failing.output
    row = next(r for r in json.loads(failing.stdout) if r["part"] == "image_factory")
    assert "HTTP 503" in row["error"]

    home.write_config(image_factory={"url": "http://127.0.0.1:9"})
    unreachable = home.invoke("config", "check", "--connect", "-o", "json")
    assert unreachable.exit_code == 1, unreachable.output
    row = next(r for r in json.loads(unreachable.stdout) if r["part"] == "image_factory")
    assert "Image Factory at http://127.0.0.1:9 unreachable" in row["error"]
    assert "ConnectError" not in row["error"]  # QA: the httpx class, no URL
    # Without --connect the factory is not asked.
    home.write_config(image_factory={"url": image_factory.url})
    asked = image_factory.hits["/versions"]
    assert home.invoke("config", "check").exit_code == 0
    assert image_factory.hits["/versions"] == asked


def test_a_missing_factory_ca_file_is_one_line_not_a_crash(home: Home) -> None:
    # Without --connect, the check still builds the factory's client, which read
    # image_factory.ca_file and let FileNotFoundError out as a traceback. The file is
    # now checked when the config loads, as every ca_file is: one line, exit 2.
    missing = home.root / "no-such-ca.pem"
    home.write_config(image_factory={"url": "https://factory.example", "ca_file": str(missing)})
    result = home.invoke("config", "check", "-o", "json")
    assert "Traceback" not in result.output
    assert result.exit_code == 2
    assert "image_factory.ca_file" in result.stderr
    assert str(missing) in result.stderr


def test_a_factory_ca_file_gone_after_the_load_is_a_row_not_a_crash(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file may go between the load's check and the client's build: the row
    # says so instead of a traceback.
    ca_file = home.root / "ca.pem"
    ca_file.write_bytes(Authority("check-ca").pem.cert)
    home.write_config(image_factory={"url": "https://factory.example", "ca_file": str(ca_file)})
    from talprov.config import LoadedConfig

    loaded_image_factory = LoadedConfig.image_factory

    def remove_then_read(self: LoadedConfig) -> object:
        settings = loaded_image_factory(self)
        ca_file.unlink(missing_ok=True)
        return settings

    monkeypatch.setattr(LoadedConfig, "image_factory", remove_then_read)
    result = home.invoke("config", "check", "-o", "json")
    assert "Traceback" not in result.output
    assert result.exit_code != 0
    row = next(r for r in json.loads(result.stdout) if r["part"] == "image_factory")
    assert row["result"] != "ok"
    assert row["key"] == "image_factory.ca_file"
    assert str(ca_file) in str(row["error"])


def test_connect_refuses_a_wrong_factory_password(
        home: Home, image_factory: FakeImageFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """QA: with a wrong password `config check --connect` said ok: it asked only
    GET /versions, which the authenticated factory answers to anybody. The check
    now posts the empty schematic, which needs the credentials."""
    image_factory.users = {"team-a": "right-pw-81c"}
    monkeypatch.setenv("TP_IF_PW", "wrong-pw-3f9")
    home.write_config(image_factory={"url": image_factory.url, "username": "team-a",
                                     "password": "${env:TP_IF_PW}"})
    wrong = home.invoke("config", "check", "--connect", "-o", "json")
    assert wrong.exit_code == 1, wrong.output
    row = next(r for r in json.loads(wrong.stdout) if r["part"] == "image_factory")
    assert row["key"] == "image_factory.password", row
    assert "refused" in row["error"], row
    assert "HTTP 401" in row["error"], row
    assert "image_factory.username" in row["error"], row
    assert "wrong-pw-3f9" not in wrong.output
    assert image_factory.hits["/schematics"] >= 1

    monkeypatch.setenv("TP_IF_PW", "right-pw-81c")
    right = home.invoke("config", "check", "--connect", "-o", "json")
    assert right.exit_code == 0, right.output
    row = next(r for r in json.loads(right.stdout) if r["part"] == "image_factory")
    assert row["result"].startswith("ok: answers, 5 Talos versions offered"), row
    assert "credentials accepted" in row["result"], row


def test_connect_names_the_url_for_wrong_credentials_written_into_it(
        home: Home, image_factory: FakeImageFactory) -> None:
    image_factory.users = {"team-a": "right-pw-81c"}
    url = image_factory.url.replace("://", "://team-a:wrong-pw-3f9@")
    home.write_config(image_factory={"url": url})
    wrong = home.invoke("config", "check", "--connect", "-o", "json")
    assert wrong.exit_code == 1, wrong.output
    row = next(r for r in json.loads(wrong.stdout) if r["part"] == "image_factory")
    assert row["key"] == "image_factory.url", row
    assert "HTTP 401" in row["error"], row
    assert "wrong-pw-3f9" not in wrong.output


def test_a_part_that_checks_no_certificate_says_so_in_its_row(home: Home) -> None:
    """QA: `config check -o json` answered "ok" for an instance (or the factory)
    with TLS verification off; the warning went to stderr alone, which a script
    reading the document never sees."""
    home.providers["lab"] = {"type": "proxmox", "url": "https://pve.example.test:8006",
                             "token_id": "root@pam!t", "token_secret": "s" * 20,
                             "insecure": True}
    home.write_config(image_factory={"url": "https://factory.example.test", "insecure": True})
    result = home.invoke("config", "check", "-o", "json")
    assert result.exit_code == 0, result.output
    rows = {row["part"]: row for row in json.loads(result.stdout)}
    assert rows["providers.lab"]["result"] == "ok"
    assert "TLS verification is off (insecure: true)" in rows["providers.lab"]["warning"]
    assert "TLS verification is off (image_factory.insecure: true)" in (
        rows["image_factory"]["warning"])
    assert rows["providers.fake"]["warning"] is None
