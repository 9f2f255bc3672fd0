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
    ("false", False), (" no ", None), ("ca.pem", None), ("", None), (0, None), (True, None),
    ("Off", False), ("y", True),
])
def test_written_flag_reads_only_words(value: Any, meant: bool | None) -> None:
    assert written_flag(value) is meant
