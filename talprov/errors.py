"""Errors in what people give talprov: config, request and spec files, API bodies.

These are not provider errors (see :mod:`talprov.providers.errors`): they are
raised before any cloud is asked anything, and the CLI turns them into exit 2
with one line naming the file and field, the API into 422.

Every file talprov reads is checked by a pydantic model; :func:`validate` and
:func:`validation_message` turn the model's complaint into that one line. Of
several complaints the one about an unknown key comes first: a misspelt key
(``regoin``) also makes the key it stands for (``region``) missing, and one
mistake gets one message, with the valid key it most resembles.
"""

from __future__ import annotations

import difflib
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

M = TypeVar("M", bound=BaseModel)


class Conflict(Exception):
    """A request id is already used by a request with a different body."""


class BeingDeleted(Conflict):
    """A request id belongs to a request whose deletion has not finished yet."""


class ConfigError(Exception):
    """Invalid user input: a config, request or spec file. ``where`` names file and field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def read_user_file(path: Path, where: str, what: str | None = None) -> str:
    """The text of a file a person named (config, request, spec, patch, reference).

    Raises ``ConfigError`` at ``where`` — "cannot read ``what`` (default: the
    path as looked for): why" — for a missing or unreadable file and for one that
    is not UTF-8 text, never a traceback. Reads only.
    """
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    raise ConfigError(where, f"cannot read {what or path}: {reason}")


#: The file name that stands for standard input in ``-f``/``--request`` (``-f -``).
STDIN_PATH = "-"


def file_label(path: Path) -> str:
    """How messages name the file ``path`` given with -f: ``stdin`` for ``-``. Pure."""
    return "stdin" if str(path) == STDIN_PATH else str(path)


def read_named_file(path: Path, what: str) -> str:
    """The text of a spec or request file given with -f, ``-`` being standard input.

    A file's relative references (``file:``, patches) are then resolved against
    ``path.parent``, which for ``-`` is the current directory. Raises
    ``ConfigError`` as :func:`read_user_file` does (``stdin: cannot read the
    spec: not UTF-8 text``). Reads only; stdin can be read once.
    """
    if str(path) != STDIN_PATH:
        return read_user_file(path, str(path), what)
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    raise ConfigError(file_label(path), f"cannot read {what}: {reason}")


def yaml_error(exc: Exception, where: str) -> ConfigError:
    """The one message for text that does not parse as YAML, in any file: where
    ``where: line L, column C`` (when the parser knows), what ``not valid YAML:
    <the parser's problem>``. Only the parser's description: the snippet it also
    offers may hold secrets. Pure."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "cannot be parsed"
    at = f"{where}: line {mark.line + 1}, column {mark.column + 1}" if mark is not None else where
    return ConfigError(at, f"not valid YAML: {problem}")


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping.

    PyYAML keeps the last value silently, so a second ``providers:`` block would
    drop the first; Go's yaml.v3, which Talos and Omni read YAML with, refuses it
    ("mapping key already defined"), and so does talprov, for every file.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        refuse_duplicate_keys(node)
        return super().construct_mapping(node, deep)


def refuse_duplicate_keys(node: yaml.MappingNode) -> None:
    """Raise a YAML error at the second occurrence of a scalar key of ``node``
    (merge keys ``<<`` may override: they are not checked). Pure."""
    seen: set[tuple[str, str]] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = (key_node.tag, str(key_node.value))
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key_node.value!r} appears twice in one mapping",
                key_node.start_mark)
        seen.add(key)


#: What a string holding a lone UTF-16 surrogate is told, in files and the API alike.
NOT_UNICODE = "must be valid Unicode text (no unpaired surrogate such as \\ud800)"
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_at(value: Any) -> list[str | int] | None:
    """The location (keys and list indexes) of the first string in ``value`` (nested
    dicts, lists and tuples) holding a lone UTF-16 surrogate, or None. A dict key
    that holds one is located at its dict. Pure.

    YAML (``"\\ud800"``) and JSON can escape such a surrogate and Python keeps it,
    but it has no UTF-8 form: a store, an SDK or Talos would fail on it later
    (``UnicodeEncodeError``, or an unreadable config), so every front door refuses
    it where the input is read."""
    if isinstance(value, str):
        return [] if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _SURROGATE.search(key):
                return []
            inner = lone_surrogate_at(item)
            if inner is not None:
                return [str(key), *inner]
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            inner = lone_surrogate_at(item)
            if inner is not None:
                return [index, *inner]
    return None


def refuse_lone_surrogates(value: Any, where: str, sep: str = ": ") -> None:
    """Raise ``ConfigError`` at ``where`` + the field path (see
    :func:`lone_surrogate_at`) when a string in ``value`` holds a lone surrogate.
    Never quotes the value. Pure."""
    loc = lone_surrogate_at(value)
    if loc is not None:
        path = dotted(loc)
        raise ConfigError(f"{where}{sep}{path}" if path else where, NOT_UNICODE)


class MissingExtra(ConfigError):
    """A provider type (or the service) needs an optional extra that is not installed;
    the message carries the pip command."""


def validate(model: type[M], data: Any, where: str, sep: str = ".") -> M:
    """``model.model_validate(data)``; raises ``ConfigError`` at ``where`` + field path
    with :func:`describe_problem`'s message (never the value). Pure."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field, message = validation_message(exc, where, sep, model=model)
        raise ConfigError(field, message) from None


def validation_message(exc: ValidationError, prefix: str, sep: str = ".", *,
                       model: type[BaseModel] | None = None) -> tuple[str, str]:
    """The most telling problem of a pydantic error as (``prefix`` + field path, message).

    ``model`` (the model that was validated) lets an unknown key be answered with
    the valid key it most resembles.
    """
    path, message = describe_problem(exc.errors(), model=model)
    return (f"{prefix}{sep}{path}" if path else prefix), message


def telling_error(errors: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The one of pydantic's ``errors`` that :func:`describe_problem` describes: an
    unknown key first (see the module docstring). ``errors`` must not be empty. Pure."""
    return next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])


def describe_problem(errors: Sequence[Mapping[str, Any]], *,
                     model: type[BaseModel] | None = None) -> tuple[str, str]:
    """(dotted field path, short message) of the most telling of ``errors``.

    An unknown key comes first (see the module docstring); the message never
    carries the input value, which may be a secret. ``errors`` must not be empty.
    """
    error = telling_error(errors)
    loc = list(error.get("loc", ()))
    key_error = bool(loc) and loc[-1] == "[key]"  # a bad key of a dict: name the key
    if key_error:
        loc.pop()
    path = dotted(loc)
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    message = str(error.get("msg", "is invalid"))  # pydantic's, never with the value
    if kind == "extra_forbidden":
        message = unknown_key_message(str(loc[-1]), _keys_at(model, loc[:-1]) if model else [])
    elif kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", message))
        # Model validators name their own field as "field: problem".
        head, sep, tail = message.partition(": ")
        if sep and " " not in head and not path.endswith(head):
            path = f"{path}.{head}" if path else head
            message = tail
    elif (strict := strict_type_message(kind, error.get("input"), json=False)) is not None:
        # A strict count or flag given as "2" or "yes" (YAML quotes): say so, in the
        # API's words, without the value.
        message = strict
    elif kind in _SIMPLE_MESSAGES:
        message = _SIMPLE_MESSAGES[kind]
        if kind == "finite_number" and model is not None:
            # What the setting may be instead, when it has bounds (QA).
            message += _range_of(_field_at(model, loc))
    elif kind in _BOUNDS:
        message = f"must be {_BOUNDS[kind]} {_number(next(iter(ctx.values()), ''))}"
    elif (words := constraint_in_words(kind, ctx)) is not None:
        message = words
    elif kind in ("literal_error", "enum"):
        message = f"must be one of {ctx.get('expected', '')}"
    return path, (f"key {message}" if key_error else message)


# The shape of every DNS-label-like name talprov takes (request ids, set names):
# first and last a lowercase letter or digit, '-' allowed between, at most N long.
_LABEL_SHAPE = re.compile(r"\^\[a-z0-9\]\(\[-a-z0-9\]\{0,(\d+)\}\[a-z0-9\]\)\?\$")
_PATTERN_WORDS = {
    r"^[^\x00]*$": "must not contain a NUL character",
    r"^[0-9a-fA-F]{64}$": "must be 64 hexadecimal digits (a SHA-256)",
    # Providers' settings and provider_data (tests/unit/test_pattern_words.py finds
    # every pattern of those models and fails on one missing here).
    r"^https://[^/\s]+(:\d+)?/?$":
        "must be an https:// URL with a host and optional port, no path",
    r"^https?://[^/\s]+(:\d+)?/?$":
        "must be an http:// or https:// URL with a host and optional port, no path",
    r"^https://[^/\s]+(/sdk)?/?$":
        "must be an https:// URL with a host and optional port, no path but /sdk",
    r"^[^@!\s]+@[^@!\s]+![A-Za-z][A-Za-z0-9._-]*$":
        "must be user@realm!tokenname (the token name starting with a letter)",
    r"^[^@\s]+@[^@\s]+$": "must be user@realm, without spaces",
    r"^[A-Za-z][A-Za-z0-9._-]*$":
        "must be letters, digits, '.', '_' and '-', starting with a letter",
    r"^[A-Za-z0-9_.+-]+$": "must be letters, digits, '_', '.', '+' and '-'",
    r"^(q35|pc)(-[0-9.]+)?(\+pve\d+)?$":
        "must be q35 or pc, optionally with a version and a +pveN suffix (q35-8.1+pve0)",
    r"^[^\s/][^\n]*$": "must be one line, not starting with a space or '/'",
    r"^[^\n]+$": "must be one line, not empty",
    r"^[0-9A-Za-z-]{1,64}$": "must be letters, digits and '-', at most 64 characters",
    r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$":
        "must be an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>",
    r"^[\w+=,.@-]{2,64}$":
        "must be 2 to 64 letters, digits and '+', '=', ',', '.', '@', '_', '-'",
    r"^\d+(\.\d+)?$": "must be a decimal number such as 0.05 (a string)",
    r"^[a-z0-9-]+\.[a-z0-9-]+$": "must be an instance type such as m6i.large",
    r"^ami-[0-9a-f]+$": "must be an AMI id, ami- and hexadecimal digits",
    r"^(on|cycle)$": "must be on or cycle",
    r"^[a-z0-9][-a-z0-9]{0,30}$":
        "must be lowercase letters, digits and '-', starting with a letter or digit, at "
        "most 31 characters",
}


#: What a number or flag written as a string gets told, in files and the API alike.
QUOTES_HINT = ", not a string (remove the quotes)"

_FLAG: TypeAdapter[bool] = TypeAdapter(bool)


def written_flag(value: object) -> bool | None:
    """The flag a string or number stands for, read as every talprov bool setting
    reads one that is not true or false ("false", "no", "off", "0", "true", "yes",
    "on", "1", any case; the numbers 0 and 1); None for anything else, true and
    false themselves too. For a setting that also takes a string (AWS's
    ``verify_tls``: a flag or a CA bundle path) and for raw blocks read before
    their model (the TLS-off warning must see what the model will read). Pure."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        # pydantic's lax bool takes 0 and 1 (and 0.0, 1.0), nothing else.
        return bool(value) if value in (0, 1) else None
    if not isinstance(value, str):
        return None
    try:
        return _FLAG.validate_python(value)
    except ValidationError:
        return None


#: What a strict number or flag must be, by pydantic's error type: in a JSON body,
#: in a YAML file (config, request file, cluster spec).
_STRICT_NOUNS = {
    "int_type": ("a JSON integer", "an integer"),
    "float_type": ("a JSON number", "a number"),
    "bool_type": ("a JSON boolean", "true or false"),
}
_NUMBERS: dict[str, TypeAdapter[Any]] = {"int_type": TypeAdapter(int),
                                         "float_type": TypeAdapter(float)}


def strict_type_message(kind: str, value: object, *, json: bool) -> str | None:
    """The one message of every door (API body, request file, cluster spec, config)
    for a strict number or flag given something else, or None when ``kind`` is no
    such error: "must be an integer" (a JSON body: "a JSON integer"), and, when
    ``value`` is a string the lax reading would have taken ("20", "yes", "off"),
    QUOTES_HINT after it -- the quoted value is not read as 20 or true. Never
    repeats ``value``. Pure."""
    nouns = _STRICT_NOUNS.get(kind)
    if nouns is None:
        return None
    message = f"must be {nouns[0] if json else nouns[1]}"
    return message + QUOTES_HINT if _reads_as(kind, value) else message


def _reads_as(kind: str, value: object) -> bool:
    """Whether the string ``value`` is what a lax ``kind`` field would have read."""
    if not isinstance(value, str):
        return False
    if kind == "bool_type":
        return written_flag(value) is not None
    try:
        _NUMBERS[kind].validate_python(value)
    except ValidationError:
        return False
    return True


def quoted_in_json(kind: str, value: object) -> str | None:
    """The API's message for a JSON number or boolean sent as a string ("3",
    "true"), or None for any other mistake (see :func:`strict_type_message`).
    Never repeats ``value``. Pure."""
    if not isinstance(value, str):
        return None
    return strict_type_message(kind, value, json=True)


def constraint_in_words(kind: str, ctx: Mapping[str, Any]) -> str | None:
    """A pattern or length rule pydantic reports as error ``kind`` with ``ctx``, in
    words naming the limit (files and the API's 422s alike); None for any other
    kind. Never the value. Pure."""
    if kind == "string_pattern_mismatch":
        return pattern_in_words(str(ctx.get("pattern", "")))
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    return None


def pattern_in_words(pattern: str) -> str:
    """What a string must look like, in words, for a pattern talprov uses; "must
    match <pattern>" for any other. A person should not have to read a regular
    expression to fix a name. Pure."""
    label = _LABEL_SHAPE.fullmatch(pattern)
    if label is not None:
        return ("must be lowercase letters, digits and '-', starting and ending with a "
                f"letter or digit, at most {int(label.group(1)) + 2} characters")
    return _PATTERN_WORDS.get(pattern, f"must match {pattern or 'the expected pattern'}")


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """"; did you mean 'x'?" for the one of ``known`` closest to ``name`` (difflib),
    or "" when none is close. Pure."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown_key_message(key: str, valid: Sequence[str]) -> str:
    """"unknown field" with the closest of ``valid`` (difflib), else the valid keys."""
    hint = did_you_mean(key, valid)
    if hint:
        return f"unknown field{hint}"
    if valid and len(valid) <= _LISTED_KEYS:
        return f"unknown field (valid: {', '.join(sorted(valid))})"
    return "unknown field"


#: Up to this many valid keys are listed when none resembles an unknown one.
_LISTED_KEYS = 12


def _number(value: Any) -> str:
    """A bound as people write it: 31536000, not pydantic's 31536000.0 of a float
    field; 0.5 stays 0.5. Pure."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def dotted(loc: Sequence[Any]) -> str:
    """A pydantic location as people write it: ``a.b[0].c``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _keys_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The keys a mapping at ``loc`` inside ``model`` may have (as written in files)."""
    current: list[Any] = [model]
    for part in loc:
        stepped = [inner for kind in current for inner in _step(kind, part)]
        # A part nothing understands is a union member's tag in pydantic's locations.
        current = stepped or current
    keys: set[str] = set()
    for kind in current:
        for member in _members(kind):
            if isinstance(member, type) and issubclass(member, BaseModel):
                keys.update(_field_keys(member))
    return sorted(keys)


def _field_at(model: type[BaseModel], loc: Sequence[Any]) -> FieldInfo | None:
    """The field a pydantic location inside ``model`` ends at, when one model
    field answers it (else None: a union's members may differ)."""
    if not loc or not isinstance(loc[-1], str):
        return None
    current: list[Any] = [model]
    for part in loc[:-1]:
        current = [inner for kind in current for inner in _step(kind, part)] or current
    found = [info for kind in current for member in _members(kind)
             if isinstance(member, type) and issubclass(member, BaseModel)
             for name, info in member.model_fields.items() if loc[-1] in (name, info.alias)]
    return found[0] if len(found) == 1 else None


_LOW_WORDS = {"gt": "more than", "ge": "at least"}
_HIGH_WORDS = {"lt": "less than", "le": "at most"}


def _range_of(field: FieldInfo | None) -> str:
    """``field``'s bounds in words after a colon (": more than 0 and at most
    31536000"), or "" when it has none. Pure."""
    if field is None:
        return ""
    words = [f"{said} {_number(getattr(bound, key))}"
             for table in (_LOW_WORDS, _HIGH_WORDS)
             for key, said in table.items()
             for bound in field.metadata if hasattr(bound, key)]
    return f": {' and '.join(words)}" if words else ""


def _members(kind: Any) -> list[Any]:
    """``kind`` with Optional/Union/Annotated unwrapped into its members."""
    origin = typing.get_origin(kind)
    if origin is typing.Annotated:
        return _members(typing.get_args(kind)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for arg in typing.get_args(kind) for m in _members(arg)]
    return [kind]


def _step(kind: Any, part: Any) -> list[Any]:
    found = []
    for member in _members(kind):
        origin, args = typing.get_origin(member), typing.get_args(member)
        if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(part, str):
            for name, info in member.model_fields.items():
                if part in (name, info.alias):
                    found.append(info.annotation)
        elif origin in (list, tuple, set, frozenset, Sequence) and isinstance(part, int) and args:
            found.append(args[0])
        elif origin in (dict, Mapping) and isinstance(part, str) and len(args) == 2:
            found.append(args[1])
    return found


def _field_keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


_SIMPLE_MESSAGES = {
    "missing": "is required",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    # Every model sets allow_inf_nan=False: a wait of .inf overflows time.sleep and
    # timedelta later, and .nan slips past comparisons (tests/unit/test_config_finite_numbers.py).
    "finite_number": "must be a finite number, not .inf or .nan",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "string_too_short": "must not be empty",
}
_BOUNDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}
