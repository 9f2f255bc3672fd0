"""Schematic ids must be the Image Factory's own, byte for byte."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import SecretStr

from talprov.errors import ConfigError
from talprov.providers.types import JoinSpec, MachineRequest, MetaValue, Overlay
from talprov.talos.schematic import DEFAULT_SCHEMATIC_ID, Schematic

# Vectors from siderolabs/image-factory pkg/schematic/schematic_test.go (TestUnmarshalID):
# the YAML/JSON bodies the factory itself parses, with the ids it expects.
UNMARSHAL_VECTORS = [
    ("{}", DEFAULT_SCHEMATIC_ID),
    ("customization: {}", DEFAULT_SCHEMATIC_ID),
    ('customization: {"extraKernelArgs": []}', DEFAULT_SCHEMATIC_ID),
    (
        '{"customization": {"extraKernelArgs": ["noapic", "nolapic"]}}',
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
    ),
    (
        '{"customization": {"extraKernelArgs": ["noapic", "nolapic"], "systemExtensions": {}}}',
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
    ),
    (
        '{"customization": {"meta": [{"key": 10, "value": "foo"}], "extraKernelArgs": [],'
        ' "systemExtensions": {}}}',
        "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
    ),
    (
        '{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"}}',
        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
    ),
    (
        '{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"},'
        '"customization":{}}',
        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
    ),
    (
        '{"customization":{"secureboot": {"includeWellKnownCertificates": true}}}',
        "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
    ),
]

# Vectors from siderolabs/image-factory internal/integration/schematic_test.go (ids the
# running factory returns). The extensions vector shows the factory keeps list order.
INTEGRATION_VECTORS = [
    (
        Schematic(extra_kernel_args=("nolapic", "nomodeset")),
        "e0fb1129bbbdfb5d002e94af4cdce712a8370e850950a33a242d4c3f178c532d",
    ),
    (
        Schematic(
            official_extensions=(
                "siderolabs/amd-ucode",
                "siderolabs/gvisor",
                "siderolabs/gasket-driver",
            )
        ),
        "51ff3e49313773332729a5c04e57af0dbe2e6d3f65ff638e6d4c3a05065fefff",
    ),
    (
        Schematic(meta=(MetaValue(key=0xA, value='{"externalIPs":["1.2.3.4"]}'),)),
        "fe866116408a5a13dab7d5003eb57a00954ea81ebeec3fbbcd1a6d4462a00036",
    ),
]


@pytest.mark.parametrize(("text", "expected"), UNMARSHAL_VECTORS)
def test_factory_unmarshal_vectors(text: str, expected: str) -> None:
    schematic = Schematic.from_yaml(text, "vector.yaml")
    assert schematic.id() == expected
    assert hashlib.sha256(schematic.canonical_yaml()).hexdigest() == expected


@pytest.mark.parametrize(("schematic", "expected"), INTEGRATION_VECTORS)
def test_factory_integration_vectors(schematic: Schematic, expected: str) -> None:
    assert schematic.id() == expected
    # Reading back what we would POST gives the same schematic and id.
    assert Schematic.from_yaml(schematic.to_yaml(), "roundtrip").id() == expected


def test_model_vectors_match_pkg_schematic_test_id() -> None:
    # TestID in pkg/schematic/schematic_test.go builds these as Go structs.
    assert Schematic().id() == DEFAULT_SCHEMATIC_ID
    assert Schematic(extra_kernel_args=("noapic", "nolapic")).id() == (
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"
    )
    assert Schematic(meta=(MetaValue(key=10, value="foo"),)).id() == (
        "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f"
    )
    assert Schematic(secureboot_include_well_known_certificates=True).id() == (
        "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6"
    )


def test_canonical_form_layout() -> None:
    schematic = Schematic(
        overlay=Overlay(
            image="siderolabs/sbc-rockchip", name="rock5b", options={"b": 1, "a": [True]}
        ),
        extra_kernel_args=("console=ttyS0",),
        meta=(MetaValue(key=12, value="yes"),),
        official_extensions=("siderolabs/iscsi-tools",),
        secureboot_include_well_known_certificates=True,
    )
    assert schematic.canonical_yaml().decode() == (
        "overlay:\n"
        "    image: siderolabs/sbc-rockchip\n"
        "    name: rock5b\n"
        "    options:\n"
        "        a:\n"
        "            - true\n"
        "        b: 1\n"
        "customization:\n"
        "    extraKernelArgs:\n"
        "        - console=ttyS0\n"
        "    meta:\n"
        "        - key: 12\n"
        '          value: "yes"\n'
        "    systemExtensions:\n"
        "        officialExtensions:\n"
        "            - siderolabs/iscsi-tools\n"
        "    secureboot:\n"
        "        includeWellKnownCertificates: true\n"
    )


def test_scalars_are_read_as_go_reads_them() -> None:
    text = (
        "customization:\n"
        "  extraKernelArgs: [yes, 010, 1.50]\n"
        "  meta: [{key: 0x0b, value: on}, {key: 012, value: '3'}]\n"
        "  secureboot: {includeWellKnownCertificates: yes}\n"
    )
    schematic = Schematic.from_yaml(text, "s.yaml")
    # Typed string fields keep the source text; YAML 1.1 spellings are not booleans.
    assert schematic.extra_kernel_args == ("yes", "010", "1.50")
    assert schematic.meta == (MetaValue(key=11, value="on"), MetaValue(key=10, value="3"))
    assert schematic.secureboot_include_well_known_certificates is True


def test_empty_document_is_the_default_schematic() -> None:
    assert Schematic.from_yaml("", "empty.yaml").is_default()
    assert Schematic.from_yaml("# nothing\n", "empty.yaml").is_default()
    assert not Schematic(extra_kernel_args=("a",)).is_default()


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("something: 1\n", "s.yaml: something", "not a schematic field"),
        (
            "customization:\n  extraKernelArgs: nope\n",
            "s.yaml: customization.extraKernelArgs",
            "list",
        ),
        (
            "customization:\n  extraKernelArgs: [a, [b]]\n",
            "s.yaml: customization.extraKernelArgs[1]",
            "string",
        ),
        (
            "customization:\n  meta:\n    - key: 256\n      value: x\n",
            "s.yaml: customization.meta[0].key",
            "0 to 255",
        ),
        (
            "customization:\n  meta:\n    - key: '1'\n",
            "s.yaml: customization.meta[0].key",
            "integer",
        ),
        (
            "customization:\n  meta:\n    - kee: 1\n",
            "s.yaml: customization.meta[0].kee",
            "not a schematic field",
        ),
        (
            "customization:\n  systemExtensions:\n    officialExtension: [a]\n",
            "s.yaml: customization.systemExtensions.officialExtension",
            "not a schematic field",
        ),
        (
            "customization:\n  secureboot:\n    includeWellKnownCertificates: maybe\n",
            "s.yaml: customization.secureboot.includeWellKnownCertificates",
            "true or false",
        ),
        (
            "customization:\n  bootloader: sd-boot\n",
            "s.yaml: customization.bootloader",
            "not supported by talprov",
        ),
        ("overlay: [a]\n", "s.yaml: overlay", "mapping"),
        ("overlay:\n  image: a\n  options: 3\n", "s.yaml: overlay.options", "mapping"),
        (
            "customization:\n  extraKernelArgs: [a]\n  extraKernelArgs: [b]\n",
            "s.yaml: customization.extraKernelArgs",
            "twice",
        ),
        ("- a\n", "s.yaml: <document>", "mapping"),
    ],
)
def test_bad_schematics_name_the_field(text: str, where: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Schematic.from_yaml(text, "s.yaml")
    assert caught.value.where == where
    assert words in caught.value.message
    assert "line" in caught.value.message


def test_malformed_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError) as caught:
        Schematic.from_yaml("customization:\n  extraKernelArgs: [a\n", "bad.yaml")
    assert caught.value.where.startswith("bad.yaml: line ")
    assert "not valid YAML" in caught.value.message


def test_from_request_follows_omni() -> None:
    request = MachineRequest(
        id="web-1",
        provider="aws-dev",
        talos_version="v1.13.9",
        secure_boot=True,
        extensions=(
            "siderolabs/util-linux-tools",
            "siderolabs/iscsi-tools",
            "siderolabs/iscsi-tools",
        ),
        kernel_args=("console=ttyS1", "console=ttyS0"),
        meta_values=(MetaValue(key=10, value="x"),),
        overlay=Overlay(image="siderolabs/sbc-raspberrypi", name="rpi_generic"),
        join=JoinSpec(api_url=SecretStr("https://omni.example/?jointoken=secret")),
    )
    schematic = Schematic.from_request(request)
    # Sorted as Omni sorts them; Omni keeps the duplicate, and so must the id.
    assert schematic.official_extensions == (
        "siderolabs/iscsi-tools",
        "siderolabs/iscsi-tools",
        "siderolabs/util-linux-tools",
    )
    # Omni sorts kernel args (console= order included) before building the schematic.
    assert schematic.extra_kernel_args == ("console=ttyS0", "console=ttyS1")
    assert schematic.meta == (MetaValue(key=10, value="x"),)
    assert schematic.overlay == Overlay(image="siderolabs/sbc-raspberrypi", name="rpi_generic")
    # Secure boot picks the -secureboot asset; it does not change the schematic.
    assert schematic.secureboot_include_well_known_certificates is False
    assert "secret" not in schematic.canonical_yaml().decode()


def test_default_request_is_the_stock_image() -> None:
    request = MachineRequest(id="a", provider="p", talos_version="v1.13.9")
    assert Schematic.from_request(request).id() == DEFAULT_SCHEMATIC_ID


def test_overlay_options_are_sorted_and_typed_like_go() -> None:
    text = (
        "overlay:\n  image: img\n  name: board\n  options:\n"
        "    z10: 1.0\n    z9: 1e6\n    a: '1'\n    b: ~\n    c: 2024-01-02\n"
    )
    lines = Schematic.from_yaml(text, "o.yaml").canonical_yaml().decode().splitlines()
    assert lines[4:] == [
        '        a: "1"',
        "        b: null",
        '        c: "2024-01-02"',
        "        z9: 1e+06",
        "        z10: 1",
        "customization: {}",
    ]
