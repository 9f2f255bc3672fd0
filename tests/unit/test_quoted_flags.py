"""A flag written in quotes means the boolean, as pydantic's lax bool reads it for
every other talprov flag ("false", "no", "off", "0" ...), for AWS's ``verify_tls``
(a flag or a CA bundle path) too, and the insecure warning sees it.

Before: ``verify_tls: "false"`` was taken for a CA bundle path and refused as
"providers.x.verify_tls: false: no such file"; ``insecure: "true"`` turned
verification off without the warning an unquoted true gives.
"""

from __future__ import annotations

from typing import Any

import pytest

from talprov.aws.config import AwsConfig
from talprov.errors import written_flag
from tests.helpers import Home

AWS = {"type": "aws", "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"}
PVE = {"type": "proxmox", "url": "https://pve.example.test:8006", "token_id": "root@pam!t",
       "token_secret": "s" * 20}


@pytest.mark.parametrize(("written", "meant"), [
    ("false", False), ("False", False), ("no", False), ("off", False), ("0", False),
    ("true", True), ("TRUE", True), ("yes", True), ("on", True), ("1", True),
])
def test_a_quoted_verify_tls_is_the_flag(home: Home, written: str, meant: bool) -> None:
    assert AwsConfig.model_validate({"region": "eu-west-1", "verify_tls": written}
                                    ).verify_tls is meant
    home.providers["x"] = {**AWS, "verify_tls": written}
    home.write_config()
    result = home.invoke("config", "check")
    assert result.exit_code == 0, result.output
    warned = "provider instance x: TLS verification is off (verify_tls: false)"
    assert (warned in result.stderr) is (not meant), result.stderr


def test_a_ca_bundle_path_is_still_a_path(home: Home) -> None:
    bundle = str(home.root / "ca.pem")
    assert AwsConfig.model_validate({"region": "eu-west-1", "verify_tls": bundle}
                                    ).verify_tls == bundle


@pytest.mark.parametrize("written", ["true", "yes", "on", "1"])
def test_a_quoted_insecure_true_is_warned_about(home: Home, written: str) -> None:
    home.providers["px"] = {**PVE, "insecure": written}
    home.write_config()
    result = home.invoke("config", "check")
    assert result.exit_code == 0, result.output
    assert "provider instance px: TLS verification is off (insecure: true)" in result.stderr


@pytest.mark.parametrize(("value", "meant"), [
    ("false", False), (" no ", None), ("ca.pem", None), ("", None), (True, None),
    ("Off", False), ("y", True), (0, False), (1.0, True), (2, None), (0.5, None),
])
def test_written_flag_reads_words_and_0_or_1(value: Any, meant: bool | None) -> None:
    assert written_flag(value) is meant


@pytest.mark.parametrize(("key", "written", "warned"), [
    ("verify_tls", 0, "verify_tls: false"), ("verify_tls", 0.0, "verify_tls: false"),
    ("insecure", 1, "insecure: true"), ("insecure", 1.0, "insecure: true"),
])
def test_a_flag_written_as_a_number_is_warned_about(
        home: Home, key: str, written: float, warned: str) -> None:
    # QA: the models read 0 and 1 as the flag (pydantic's lax bool), so verification
    # was off, but the warning looked only for true/false and quoted words.
    home.providers["x"] = {**(AWS if key == "verify_tls" else PVE), key: written}
    home.write_config()
    result = home.invoke("config", "check")
    assert result.exit_code == 0, result.output
    assert f"provider instance x: TLS verification is off ({warned})" in result.stderr


@pytest.mark.parametrize(("key", "written"), [("verify_tls", 1), ("insecure", 0)])
def test_a_number_keeping_verification_on_is_not_warned_about(
        home: Home, key: str, written: int) -> None:
    home.providers["x"] = {**(AWS if key == "verify_tls" else PVE), key: written}
    home.write_config()
    result = home.invoke("config", "check")
    assert result.exit_code == 0, result.output
    assert "TLS verification is off" not in result.stderr
