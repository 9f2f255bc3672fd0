"""Per-channel encodings of the user data."""

from __future__ import annotations

import base64

import pytest
import yaml
from pydantic import ValidationError

from talprov.providers.errors import InvalidRequest
from talprov.talos.encoders import (
    StaticNetwork,
    guestinfo,
    meta_data,
    network_config,
    raw_user_data,
    user_data,
)

CONFIG = "version: v1alpha1\nmachine:\n  type: worker  # é\n"


def test_raw_user_data_is_utf8_and_bounded() -> None:
    assert raw_user_data(CONFIG) == CONFIG.encode("utf-8")
    assert user_data(CONFIG) == CONFIG.encode("utf-8")
    with pytest.raises(InvalidRequest) as caught:
        raw_user_data(CONFIG, limit=10)
    assert caught.value.field == "machine_config"
    assert "machine:" not in str(caught.value)


def test_guestinfo_is_base64_with_its_encoding_key() -> None:
    entries = guestinfo(CONFIG)
    assert entries["guestinfo.talos.config.encoding"] == "base64"
    assert base64.b64decode(entries["guestinfo.talos.config"]).decode() == CONFIG
    assert set(entries) == {"guestinfo.talos.config", "guestinfo.talos.config.encoding"}


def test_meta_data() -> None:
    assert yaml.safe_load(meta_data("web-1", "web-1.example")) == {
        "instance-id": "web-1",
        "local-hostname": "web-1.example",
    }
    assert yaml.safe_load(meta_data("web-1")) == {"instance-id": "web-1"}


def test_network_config_v2_static() -> None:
    static = StaticNetwork(
        addresses=("192.168.14.2/24", "2001:db8::2/64"),
        gateway="192.168.14.1",
        dns=("1.1.1.1", "2606:4700:4700::1111"),
        mac="00:20:6E:1F:F9:A8",
    )
    body = network_config(static)
    assert body is not None
    assert yaml.safe_load(body) == {
        "version": 2,
        "ethernets": {
            "eth0": {
                "match": {"macaddress": "00:20:6e:1f:f9:a8"},
                "addresses": ["192.168.14.2/24", "2001:db8::2/64"],
                "gateway4": "192.168.14.1",
                "nameservers": {"addresses": ["1.1.1.1", "2606:4700:4700::1111"]},
            }
        },
    }


def test_network_config_by_interface_name_and_ipv6_gateway() -> None:
    static = StaticNetwork(
        addresses=("2001:db8::5/64",), gateway="2001:db8::1", interface="enp0s18"
    )
    body = network_config(static)
    assert body is not None
    assert yaml.safe_load(body)["ethernets"] == {
        "enp0s18": {"addresses": ["2001:db8::5/64"], "gateway6": "2001:db8::1"}
    }


def test_no_static_network_means_no_file() -> None:
    assert network_config(None) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"addresses": ()},
        {"addresses": ("10.0.0.5",), "gateway": "not-an-ip"},
        {"addresses": ("10.0.0.5/33",)},
        {"addresses": ("10.0.0.5/24",), "mac": "00:11:22"},
        {"addresses": ("10.0.0.5/24",), "gateway": "2001:db8::1"},
        {"addresses": ("10.0.0.5/24",), "interface": "eth0; rm -rf"},
    ],
)
def test_static_network_is_validated(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        StaticNetwork.model_validate(fields)
