"""Just enough of Go's ``gopkg.in/yaml.v3`` to reproduce Image Factory schematic ids.

The Image Factory names a schematic by the sha256 of ``yaml.Marshal(schematic)``
(yaml.v3, default settings: 4-space indent, no line wrapping, unicode output).
Matching its ids therefore means emitting byte-for-byte what yaml.v3 emits, and
reading scalars the way yaml.v3 reads them. This module holds those rules, taken
from yaml.v3's encoder/emitter/resolver behaviour:

* a string is written plain unless it would read back as another type (int,
  float, bool, null, timestamp, YAML 1.1 bool or base-60 float), in which case it
  is double-quoted; strings with a newline use literal block style;
* the emitter then downgrades plain to single-quoted (indicators, leading or
  trailing spaces, ...) and single-quoted to double-quoted (tabs, control chars);
* indentation: a nested block is indented to the next multiple of 4, except the
  first level inside a sequence item, which just skips the ``- `` (2 columns);
* map keys are sorted with yaml.v3's "natural" order (digit runs compare as numbers).

Values handled: ``str``, ``bool``, ``int``, ``float``, ``None``, ``list`` and
``dict`` with ``str`` keys (what ``map[string]any`` decodes to).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

BEST_INDENT = 4

_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUES = {"true", "True", "TRUE"}
_FALSES = {"false", "False", "FALSE"}
_NANS = {".nan", ".NaN", ".NAN"}
_INFS = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF"}
_SPECIAL_FLOATS = _NANS | _INFS
# YAML 1.1 booleans: yaml.v3 reads them as strings but quotes them on output so
# that YAML 1.1 parsers do not turn them into booleans.
_YAML11_TRUE = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"}
_YAML11_FALSE = {"n", "N", "no", "No", "NO", "off", "Off", "OFF"}
OLD_BOOLS = _YAML11_TRUE | _YAML11_FALSE
_BASE60_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^[-+]?(inf|infinity|nan)$", re.I)
_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})([Tt]| )(\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d+)?"
    r"(Z|[+-]\d{2}:\d{2})?$"
)
# Line breaks other than "\n" change how yaml.v3 folds quoted scalars; schematics
# never need them, so they are refused rather than emitted slightly wrong.
_UNSUPPORTED_BREAKS = ("\r", "\x85", "\u2028", "\u2029")

INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


class GoYamlError(ValueError):
    """A value that this subset cannot emit exactly as yaml.v3 would."""


# ---------------------------------------------------------------- reading scalars


def go_parse_int(text: str) -> int | None:
    """Go's ``strconv.ParseInt(text, 0, 64)``, then ``ParseUint``; None when neither parses."""
    body = text
    negative = signed = False
    if body[:1] in ("+", "-"):
        signed, negative = True, body[0] == "-"
        body = body[1:]
    base = 10
    lowered = body.lower()
    if lowered.startswith(("0x", "0o", "0b")):
        base = {"x": 16, "o": 8, "b": 2}[lowered[1]]
        body = body[2:]
    elif len(body) > 1 and body[0] == "0":
        base = 8  # Go's base 0 reads a leading zero as octal
        body = body[1:]
    if not body or any(c not in _DIGITS[base] for c in body):
        return None
    value = -int(body, base) if negative else int(body, base)
    # ParseUint takes no sign, so only an unsigned spelling may exceed int64.
    limit = INT64_MAX if signed else UINT64_MAX
    return value if INT64_MIN <= value <= limit else None


def _looks_like_timestamp(text: str) -> bool:
    match = _DATE.match(text) or _DATETIME.match(text)
    if match is None:
        return False
    year, month, day = (int(g) for g in match.groups()[:3])
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    if match.re is _DATETIME:
        hour, minute, second = (int(g) for g in match.groups()[4:7])
        return hour < 24 and minute < 60 and second < 60
    return True


def resolve_plain(text: str) -> Any:  # noqa: PLR0911 - one return per YAML type
    """The value yaml.v3 gives an untagged plain scalar decoded into ``any``.

    Timestamps stay strings (yaml.v3 only makes a time.Time for a time.Time
    target or an explicit tag). Raises ``GoYamlError`` for the merge key ``<<``.
    """
    if text in _NULLS:
        return None
    if text in _TRUES:
        return True
    if text in _FALSES:
        return False
    if text == "<<":
        raise GoYamlError("YAML merge keys (<<) are not supported")
    if text in _SPECIAL_FLOATS:
        return float(text.replace(".", "").lower())
    first = text[:1]
    if first == ".":
        return float(text) if _GO_FLOAT.match(text) else text
    if first not in "+-0123456789":
        return text
    if _looks_like_timestamp(text):
        return text
    plain = text.replace("_", "")
    number = go_parse_int(plain)
    if number is not None:
        return number
    if _YAML_FLOAT.match(plain):
        return float(plain)
    return text


def resolves_to_non_string(text: str) -> bool:
    """Whether yaml.v3 would read plain ``text`` back as something other than a
    string (null, a bool, an int of any base, a float, a timestamp, a merge key).
    Pure; plain empty text is null."""
    if text in _NULLS or text in _TRUES or text in _FALSES or text == "<<":
        return True
    if text in _SPECIAL_FLOATS:
        return True
    first = text[:1]
    if first == ".":
        return bool(_GO_FLOAT.match(text))
    if first not in "+-0123456789":
        return False
    if _looks_like_timestamp(text):
        return True
    plain = text.replace("_", "")
    return go_parse_int(plain) is not None or bool(_YAML_FLOAT.match(plain))


# ---------------------------------------------------------------- writing scalars


def _printable(char: str) -> bool:
    code = ord(char)
    return (
        code == 0x0A
        or 0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
    )


@functools.cache
def _analyze(value: str) -> tuple[bool, bool, bool]:
    """yaml.v3's scalar analysis: (block_plain_allowed, single_quoted_allowed, block_allowed)."""
    if not value:
        return True, True, False
    block_indicators = value.startswith(("---", "..."))
    line_breaks = special = tabs = False
    space_break = break_space = False
    previous_space = previous_break = False
    preceded_by_whitespace = True
    for index, char in enumerate(value):
        followed_by_whitespace = index + 1 >= len(value) or value[index + 1] in " \t"
        if index == 0:
            if char in "#,[]{}&*!|>'\"%@`":
                block_indicators = True
            elif char in "?:" or char == "-":
                block_indicators = block_indicators or followed_by_whitespace
        elif (char == ":" and followed_by_whitespace) or (char == "#" and preceded_by_whitespace):
            block_indicators = True
        if char == "\t":
            tabs = True
        elif not _printable(char):
            special = True
        if char == " ":
            break_space = break_space or previous_break
            previous_space, previous_break = True, False
        elif char == "\n":
            line_breaks = True
            space_break = space_break or previous_space
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_by_whitespace = char in " \t\n"
    edge_space = value[0] in " \n" or value[-1] in " \n"
    plain = not (edge_space or break_space or space_break or tabs or special or line_breaks)
    plain = plain and not block_indicators
    single = not (break_space or space_break or tabs or special)
    block = not (value[-1] == " " or space_break or special)
    return plain, single, block


def _double_quoted(value: str) -> str:
    escapes = {
        "\0": "0",
        "\a": "a",
        "\b": "b",
        "\t": "t",
        "\n": "n",
        "\v": "v",
        "\f": "f",
        "\r": "r",
        "\x1b": "e",
        '"': '"',
        "\\": "\\",
        "\x85": "N",
        "\u2028": "L",
        "\u2029": "P",
    }
    out = ['"']
    for char in value:
        if not _printable(char) or char in '\n"\\' or char == "\ufeff":
            code = ord(char)
            if char in escapes:
                out.append("\\" + escapes[char])
            elif code <= 0xFF:
                out.append(f"\\x{code:02X}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04X}")
            else:
                out.append(f"\\U{code:08X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _literal(value: str, indent: int) -> list[str]:
    """A literal block scalar: the header (``|``, ``|-``, ``|+``) and its lines."""
    hint = str(BEST_INDENT) if value[0] in " \n" else ""
    if not value.endswith("\n"):
        chomp = "-"
    elif len(value) == 1 or value.endswith("\n\n"):
        chomp = "+"
    else:
        chomp = ""
    body = value[:-1] if value.endswith("\n") else value
    lines = [(" " * indent + line) if line else "" for line in body.split("\n")]
    return ["|" + hint + chomp, *lines]


def string_scalar(value: str, indent: int, *, key: bool = False) -> list[str]:
    """How yaml.v3 writes a string: first element inline, the rest as following lines."""
    if any(b in value for b in _UNSUPPORTED_BREAKS):
        raise GoYamlError(
            "strings with carriage returns or Unicode line separators are not supported"
        )
    plain_ok, single_ok, block_ok = _analyze(value)
    if "\n" in value:
        style = "literal" if block_ok and not key else "double"
    elif (
        value
        and not resolves_to_non_string(value)
        and not _BASE60_FLOAT.match(value)
        and value not in OLD_BOOLS
    ):
        style = "plain" if plain_ok else ("single" if single_ok else "double")
    else:
        style = "double"
    if style == "plain":
        return [value]
    if style == "single":
        return ["'" + value.replace("'", "''") + "'"]
    if style == "literal":
        return _literal(value, indent)
    return [_double_quoted(value)]


def go_format_float(value: float) -> str:  # noqa: PLR0911 - one return per Go format case
    """Go's ``strconv.FormatFloat(v, 'g', -1, 64)`` with yaml.v3's inf/nan spelling."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len(digit_tuple) - len(digits)
    point = len(digits) + exponent  # position of the decimal point in the digit string
    prefix = "-" if sign else ""
    decimal_exponent = point - 1
    # Shortest formatting switches to the exponent form from 1e+06 on (Go uses precision 6).
    if decimal_exponent < -4 or decimal_exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        esign = "-" if decimal_exponent < 0 else "+"
        return f"{prefix}{mantissa}e{esign}{abs(decimal_exponent):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


def scalar(value: Any, indent: int) -> list[str]:
    """Any scalar value as yaml.v3 writes it (see ``string_scalar`` for the shape)."""
    if value is None:
        return ["null"]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int):
        if not INT64_MIN <= value <= UINT64_MAX:
            raise GoYamlError(f"integer {value} does not fit in 64 bits")
        return [str(value)]
    if isinstance(value, float):
        return [go_format_float(value)]
    if isinstance(value, str):
        return string_scalar(value, indent)
    raise GoYamlError(f"cannot emit a value of type {type(value).__name__}")


# ---------------------------------------------------------------- block collections


def _natural_less(a: str, b: str) -> bool:
    """yaml.v3's keyList.Less for two string keys."""
    digits = False  # whether the common prefix ends in a digit
    for i in range(min(len(a), len(b))):
        ca, cb = a[i], b[i]
        if ca == cb:
            digits = ca.isdecimal()
            continue
        letter_a, letter_b = ca.isalpha(), cb.isalpha()
        if letter_a and letter_b:
            return ca < cb
        if letter_a or letter_b:
            # After a digit a letter sorts first ("a1b" < "a1."), elsewhere last.
            return letter_a if digits else letter_b
        na = nb = 0
        if ca == "0" or cb == "0":
            j = i - 1
            while j >= 0 and a[j].isdecimal():
                if a[j] != "0":
                    na = nb = 1
                    break
                j -= 1
        ai = i
        # Go subtracts '0' from the rune, whatever script the digit is in.
        while ai < len(a) and a[ai].isdecimal():
            na = na * 10 + ord(a[ai]) - ord("0")
            ai += 1
        bi = i
        while bi < len(b) and b[bi].isdecimal():
            nb = nb * 10 + ord(b[bi]) - ord("0")
            bi += 1
        if na != nb:
            return na < nb
        if ai != bi:
            return ai < bi
        return ca < cb
    return len(a) < len(b)


def _compare(a: str, b: str) -> int:
    if _natural_less(a, b):
        return -1
    return 1 if _natural_less(b, a) else 0


def sorted_keys(keys: Sequence[str]) -> list[str]:
    """Keys in the order yaml.v3 writes a Go map's keys."""
    return sorted(keys, key=functools.cmp_to_key(_compare))


def _nested_indent(indent: int) -> int:
    """The indent of a block nested under a mapping key at ``indent``."""
    return BEST_INDENT * ((indent + BEST_INDENT) // BEST_INDENT)


def _is_empty_collection(value: Any) -> bool:
    return isinstance(value, (Mapping, list, tuple)) and len(value) == 0


def mapping_lines(
    items: Sequence[tuple[str, Any]], indent: int, first_prefix: str = ""
) -> list[str]:
    """A block mapping whose keys start at column ``indent``, in the given key order.

    ``first_prefix`` replaces the indentation of the first line (used for a
    mapping that starts right after a sequence's ``- ``).
    """
    lines: list[str] = []
    for position, (key, value) in enumerate(items):
        pad = first_prefix if position == 0 and first_prefix else " " * indent
        key_text = string_scalar(key, indent, key=True)[0]
        lines.extend(_entry(pad + key_text + ":", value, _nested_indent(indent)))
    return lines


def _entry(head: str, value: Any, child_indent: int) -> list[str]:
    if isinstance(value, Mapping) and value:
        keys = sorted_keys(list(value))
        return [head, *mapping_lines([(k, value[k]) for k in keys], child_indent)]
    if isinstance(value, (list, tuple)) and value:
        return [head, *sequence_lines(value, child_indent)]
    if _is_empty_collection(value):
        return [head + (" {}" if isinstance(value, Mapping) else " []")]
    rendered = scalar(value, child_indent)
    return [head + " " + rendered[0], *rendered[1:]]


def sequence_lines(items: Sequence[Any], indent: int) -> list[str]:
    """A block sequence whose dashes sit at column ``indent``."""
    lines: list[str] = []
    inner = indent + 2  # the first level inside an item only skips the "- "
    for item in items:
        dash = " " * indent + "- "
        if isinstance(item, Mapping) and item:
            keys = sorted_keys(list(item))
            lines.extend(mapping_lines([(k, item[k]) for k in keys], inner, first_prefix=dash))
        elif isinstance(item, (list, tuple)) and item:
            nested = sequence_lines(item, inner)
            lines.append(dash + nested[0].lstrip(" "))
            lines.extend(nested[1:])
        elif _is_empty_collection(item):
            lines.append(dash + ("{}" if isinstance(item, Mapping) else "[]"))
        else:
            rendered = scalar(item, inner)
            lines.append(dash + rendered[0])
            lines.extend(rendered[1:])
    return lines
