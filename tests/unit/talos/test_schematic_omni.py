"""A request's schematic id must be the one Omni's infra-provider library would give it.

Omni's ``buildSchematic`` (siderolabs/omni ``client/pkg/infra/provision/context.go``)
takes the request's kernel args, appends the join's kernel args (unless the provider
asked for ``WithoutConnectionParams``), sorts them all, sorts the extensions, keeps the
META values in request order and copies only the overlay's ``name`` and ``image``.
The expected ids below are the Image Factory's own test vectors
(siderolabs/image-factory ``pkg/schematic/schematic_test.go``) for the schematic
Omni's rules produce, or the sha256 of yaml.v3 text written out by hand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse

import pytest
from pydantic import SecretStr

from talprov.providers.types import JoinSpec, MachineRequest, Overlay
from talprov.talos.schematic import Schematic

TOKEN = "j0in-T0KEN-canary"
API_URL = f"https://omni.example:8090/?jointoken={TOKEN}"


def request(**fields: object) -> MachineRequest:
    return MachineRequest.model_validate(
        {"id": "m-1", "provider": "p", "talos_version": "v1.13.9", **fields})


def test_unsorted_kernel_args_give_omnis_id() -> None:
    # Omni sorts ["nolapic", "noapic"] into TestID's "config1" schematic.
    schematic = Schematic.from_request(request(kernel_args=["nolapic", "noapic"]))
    assert schematic.extra_kernel_args == ("noapic", "nolapic")
    assert schematic.id() == "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"


def test_overlay_options_are_left_out_as_omni_does() -> None:
    # Omni copies Name and Image only, which is TestUnmarshalID's "overlay" schematic.
    overlay = Overlay(image="siderolabs/sbc-raspberrypi", name="rpi_generic",
                      options={"configTxtAppend": "dtoverlay=vc4-kms-v3d"})
    schematic = Schematic.from_request(request(overlay=overlay))
    assert schematic.overlay == Overlay(image="siderolabs/sbc-raspberrypi", name="rpi_generic")
    assert schematic.id() == "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9"


def test_join_kernel_args_are_sorted_in_with_the_requests() -> None:
    join = JoinSpec(api_url=SecretStr(API_URL), mode="kernel_args")
    schematic = Schematic.from_request(
        request(kernel_args=["talos.dashboard.disabled=1", "console=ttyS0"], join=join))
    # yaml.v3 Marshal of the Go struct, written out by hand (4-space indent, plain scalars).
    expected = (
        "customization:\n"
        "    extraKernelArgs:\n"
        "        - console=ttyS0\n"
        f"        - siderolink.api={API_URL}\n"
        "        - talos.dashboard.disabled=1\n"
        "        - talos.events.sink=[fdae:41e4:649b:9303::1]:8090\n"
        "        - talos.logging.kernel=tcp://[fdae:41e4:649b:9303::1]:8092\n"
    )
    assert schematic.canonical_yaml().decode() == expected
    assert schematic.id() == hashlib.sha256(expected.encode()).hexdigest()
    # The schematic carries the join token: it must not show in a repr.
    assert TOKEN not in repr(schematic)


@pytest.mark.parametrize("mode", ["auto", "documents"])
def test_join_as_documents_leaves_the_schematic_alone(mode: str) -> None:
    join = JoinSpec(api_url=SecretStr(API_URL), mode=mode)
    with_join = Schematic.from_request(request(kernel_args=["nolapic", "noapic"], join=join))
    assert with_join.id() == Schematic.from_request(
        request(kernel_args=["noapic", "nolapic"])).id()


def test_duplicate_extensions_are_kept_sorted_as_omni_does() -> None:
    # buildSchematic copies the request's extensions as they are and only sorts them
    # (slices.Sort); it skips a duplicate only among the provider's WithExtraExtensions.
    # The factory's Marshal keeps every list item, so the duplicate is in the id.
    schematic = Schematic.from_request(request(extensions=[
        "siderolabs/iscsi-tools", "siderolabs/amd-ucode", "siderolabs/iscsi-tools"]))
    expected = (
        "customization:\n"
        "    systemExtensions:\n"
        "        officialExtensions:\n"
        "            - siderolabs/amd-ucode\n"
        "            - siderolabs/iscsi-tools\n"
        "            - siderolabs/iscsi-tools\n"
    )
    assert schematic.canonical_yaml().decode() == expected
    assert schematic.id() == hashlib.sha256(expected.encode()).hexdigest()
    # The same schematic given as a file (image id -f) names the same id.
    assert Schematic.from_yaml(expected, "dup.yaml").id() == schematic.id()


def test_extensions_are_sorted_into_the_factory_vector_order() -> None:
    # The factory's integration vector lists amd-ucode, gvisor, gasket-driver in that
    # order; Omni sorts a request's extensions, so the request's id is the sorted one.
    names = ["siderolabs/amd-ucode", "siderolabs/gvisor", "siderolabs/gasket-driver"]
    vector = Schematic(official_extensions=tuple(names))
    assert vector.id() == "51ff3e49313773332729a5c04e57af0dbe2e6d3f65ff638e6d4c3a05065fefff"
    from_request = Schematic.from_request(request(extensions=names))
    assert from_request.official_extensions == tuple(sorted(names))
    assert from_request.id() == Schematic(official_extensions=tuple(sorted(names))).id()
    assert from_request.id() != vector.id()


def test_meta_values_keep_request_order_and_duplicates() -> None:
    # Omni maps MetaValues one to one (xslices.Map); it replaces by key only for the
    # provider's WithMetaValues, which talprov has no equivalent of.
    metas = [{"key": 12, "value": "b"}, {"key": 10, "value": "a"}, {"key": 12, "value": "c"}]
    schematic = Schematic.from_request(request(meta_values=metas))
    assert [(m.key, m.value) for m in schematic.meta] == [(12, "b"), (10, "a"), (12, "c")]


def test_omnis_empty_request_vector() -> None:
    # client/pkg/infra/infra_test.go genSchematic: a request with nothing set, built
    # WithoutConnectionParams, must name 376567...; a join as documents is the same case.
    join = JoinSpec(api_url=SecretStr(API_URL), mode="documents")
    assert Schematic.from_request(request(join=join)).id() == (
        "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba")


def omni_test_join_kernel_args() -> list[str]:
    """The connection kernel args Omni's infra_test.go gives its test provider:
    join token "abcd" made a v2 token carrying the provider id "test"
    (client/pkg/jointoken: "v2:" + base64 of the JSON {extra_data, signature},
    the signature an HMAC-SHA256 of the extra data's JSON keyed by the token),
    machine API http://127.0.0.1:8099, events port 8091, logs port 8092, on the
    SideroLink host fdae:41e4:649b:9303::1 (client/pkg/siderolink)."""
    extra = {"omni.sidero.dev/infra-provider-id": "test"}
    signature = hmac.new(b"abcd", json.dumps(extra, separators=(",", ":")).encode(),
                         hashlib.sha256).digest()
    body = json.dumps({"extra_data": extra,
                       "signature": base64.b64encode(signature).decode()},
                      separators=(",", ":"))
    token = "v2:" + base64.b64encode(body.encode()).decode()
    api = "http://127.0.0.1:8099?" + urllib.parse.urlencode({"jointoken": token})
    return [f"siderolink.api={api}", "talos.events.sink=[fdae:41e4:649b:9303::1]:8091",
            "talos.logging.kernel=tcp://[fdae:41e4:649b:9303::1]:8092"]


def test_omnis_connection_params_vector() -> None:
    # infra_test.go genSchematic: the same empty request built with the connection
    # params must name 4e2a2e...; given in reverse, the sort must restore Omni's order.
    args = omni_test_join_kernel_args()
    schematic = Schematic.from_request(request(kernel_args=list(reversed(args))))
    assert schematic.extra_kernel_args == tuple(args)
    assert schematic.id() == "4e2a2ec4368100c1b21d4fa7be47f3d38ddab9185f34fc187f82400b1e20da17"
