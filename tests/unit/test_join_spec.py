"""Join values are checked where they are modelled, for every way a request comes in."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from talprov.providers.types import JoinSpec, MachineRequest
from talprov.talos.join import join_kernel_args

TOKEN = "jointoken=J0IN-SECRET-abc"


@pytest.mark.parametrize("url", [
    "https://omni.example:8090/?" + TOKEN,
    "https://10.0.0.1:8090?" + TOKEN,
    "grpc://[fd00::1]:8090?" + TOKEN,
])
def test_usable_urls_are_accepted(url: str) -> None:
    assert JoinSpec.model_validate({"api_url": url}).api_url.get_secret_value() == url


@pytest.mark.parametrize(("fields", "field"), [
    ({"api_url": ""}, "api_url"),
    ({"api_url": "ftp://omni.example/?" + TOKEN}, "api_url"),
    ({"api_url": "https:///?" + TOKEN}, "api_url"),
    ({"api_url": "https://omni.example/?" + TOKEN + " talos.config=http://evil/"}, "api_url"),
    ({"api_url": "https://[fd00::1/?" + TOKEN}, "api_url"),
    # Talos's SideroLinkConfig validation: scheme https or grpc, path empty or "/".
    ({"api_url": "http://10.0.0.1:8090/?" + TOKEN}, "api_url"),
    ({"api_url": "https://omni.example/join?" + TOKEN}, "api_url"),
    ({"api_url": "grpc://omni.example:8090//?" + TOKEN}, "api_url"),
    ({"api_url": "https://omni.example/?" + TOKEN, "events_sink": "[fd00::1]:8090 x=y"},
     "events_sink"),
    ({"api_url": "https://omni.example/?" + TOKEN, "kmsg_log": "tcp://[fd00::1]:8092\n"},
     "kmsg_log"),
])
def test_unusable_values_name_the_field_and_never_quote_the_url(
        fields: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JoinSpec.model_validate(fields)
    errors = caught.value.errors(include_input=False)
    assert [e["loc"] for e in errors] == [(field,)]
    assert "J0IN-SECRET" not in str(errors)


# Omni's siderolink tests (client/pkg/siderolink/siderolink_test.go): what its providers
# render for a request with each GrpcTunnelMode.
@pytest.mark.parametrize(("given", "mode", "rendered"), [
    ("grpc://127.0.0.1:8099?jointoken=abcd", "enabled",
     "grpc://127.0.0.1:8099?grpc_tunnel=true&jointoken=abcd"),
    ("https://127.0.0.1:8099?jointoken=abcd", "unset", "https://127.0.0.1:8099?jointoken=abcd"),
    ("https://127.0.0.1:8099?grpc_tunnel=true&jointoken=abcd", "disabled",
     "https://127.0.0.1:8099?jointoken=abcd"),
    ("https://127.0.0.1:8099?jointoken=v2%3AeyJleHRy", "enabled",
     "https://127.0.0.1:8099?grpc_tunnel=true&jointoken=v2%3AeyJleHRy"),
])
def test_grpc_tunnel_renders_the_join_url_as_omni_does(
        given: str, mode: str, rendered: str) -> None:
    request = MachineRequest.model_validate({
        "id": "m1", "provider": "lab", "talos_version": "v1.13.9", "grpc_tunnel": mode,
        "join": {"api_url": given}})
    assert request.join is not None
    assert request.join.api_url.get_secret_value() == rendered
    assert join_kernel_args(request.join)[0] == f"siderolink.api={rendered}"
    again = MachineRequest.model_validate(request.model_dump())
    assert again.fingerprint() == request.fingerprint()


def test_grpc_tunnel_is_part_of_the_fingerprint_and_refuses_unknown_modes() -> None:
    body = {"id": "m1", "provider": "lab", "talos_version": "v1.13.9"}
    assert (MachineRequest.model_validate({**body, "grpc_tunnel": "enabled"}).fingerprint()
            != MachineRequest.model_validate(body).fingerprint())
    with pytest.raises(ValidationError) as caught:
        MachineRequest.model_validate({**body, "grpc_tunnel": "on"})
    assert [e["loc"] for e in caught.value.errors()] == [("grpc_tunnel",)]


def test_requests_without_grpc_tunnel_keep_the_fingerprint_they_had_before_the_field() -> None:
    request = MachineRequest.model_validate({
        "id": "m1", "provider": "lab", "talos_version": "v1.13.9", "kernel_args": ["a=b"],
        "join": {"api_url": "https://omni.example:8090/?jointoken=x"},
        "machine_config": "version: v1alpha1\n"})
    # Computed with talprov at fe47984, before grpc_tunnel existed.
    assert request.fingerprint() == (
        "adbebd513b34d24266bb789083182bcc0c40587c66f74411d17fb232ac01cf17")
