"""The yaml.v3 rules the schematic id depends on."""

from __future__ import annotations

import math

import pytest

from talprov.talos import goyaml


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.1, "0.1"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
        (1e21, "1e+21"),
        (-0.0, "-0"),
        (math.inf, ".inf"),
        (-math.inf, "-.inf"),
        (math.nan, ".nan"),
    ],
)
def test_floats_are_formatted_like_go(value: float, text: str) -> None:
    assert goyaml.go_format_float(value) == text


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("foo", "foo"),
        ("siderolabs/iscsi-tools", "siderolabs/iscsi-tools"),
        ("console=ttyS0,115200n8", "console=ttyS0,115200n8"),
        ("https://omni.example:8090/?jointoken=x", "https://omni.example:8090/?jointoken=x"),
        ("", '""'),
        ("true", '"true"'),
        ("yes", '"yes"'),
        ("Off", '"Off"'),
        ("123", '"123"'),
        ("0x1F", '"0x1F"'),
        ("1.5", '"1.5"'),
        (".5", '".5"'),
        (".git", ".git"),
        ("~", '"~"'),
        ("1:20", '"1:20"'),
        ("2024-01-02", '"2024-01-02"'),
        ("a: b", "'a: b'"),
        ("#x", "'#x'"),
        ("a #b", "'a #b'"),
        ("a#b", "a#b"),
        (" lead", "' lead'"),
        ("trail ", "'trail '"),
        ("-x", "-x"),
        ("- x", "'- x'"),
        ("[fdae:41e4:649b:9303::1]:8090", "'[fdae:41e4:649b:9303::1]:8090'"),
        ("it's", "it's"),
        ("'q'", "'''q'''"),
        ("tab\there", '"tab\\there"'),
        ("é", "é"),
        ("\U0001f600", '"\\U0001F600"'),
        ("bell\x07", '"bell\\a"'),
    ],
)
def test_strings_are_quoted_like_yaml_v3(value: str, written: str) -> None:
    assert goyaml.string_scalar(value, 4) == [written]


def test_multiline_strings_use_literal_blocks() -> None:
    assert goyaml.string_scalar("a\nb", 6) == ["|-", "      a", "      b"]
    assert goyaml.string_scalar("a\n\nb\n", 2) == ["|", "  a", "", "  b"]
    assert goyaml.string_scalar("a\n\n", 2) == ["|+", "  a", ""]
    assert goyaml.string_scalar(" a\nb", 2) == ["|4-", "   a", "  b"]
    # A space before a line break cannot be kept in a block: double quotes instead.
    assert goyaml.string_scalar("a \nb", 2) == ['"a \\nb"']


def test_plain_scalars_resolve_like_yaml_v3() -> None:
    assert goyaml.resolve_plain("yes") == "yes"
    assert goyaml.resolve_plain("True") is True
    assert goyaml.resolve_plain("~") is None
    assert goyaml.resolve_plain("010") == 8
    assert goyaml.resolve_plain("0o17") == 15
    assert goyaml.resolve_plain("1_000") == 1000
    assert goyaml.resolve_plain("18446744073709551615") == 2**64 - 1
    assert goyaml.resolve_plain("1.5e3") == 1500.0
    assert goyaml.resolve_plain("2024-01-02") == "2024-01-02"
    assert goyaml.resolve_plain("1.2.3") == "1.2.3"
    with pytest.raises(goyaml.GoYamlError):
        goyaml.resolve_plain("<<")


def test_map_keys_sort_naturally() -> None:
    assert goyaml.sorted_keys(["b10", "b9", "a", "B", "a1"]) == ["B", "a", "a1", "b9", "b10"]
    # Non-letters sort before letters, except right after a digit.
    assert goyaml.sorted_keys(["ab", "a1.", "a.", "a1b"]) == ["a.", "a1b", "a1.", "ab"]


def test_nested_collections_follow_yaml_v3_indentation() -> None:
    lines = goyaml.mapping_lines(
        [("k", {"list": [[1, 2], {"x": "v", "w": {"m": []}, "n": {}}]})], 0
    )
    assert lines == [
        "k:",
        "    list:",
        "        - - 1",
        "          - 2",
        '        - "n": {}',  # keys are strings too: YAML 1.1 booleans get quoted
        "          w:",
        "            m: []",
        "          x: v",
    ]
