"""Image Factory schematics and their ids, computed locally.

The factory (siderolabs/image-factory ``pkg/schematic``) decodes the posted YAML
into a Go struct, re-encodes it with ``yaml.v3`` and names it by the sha256 of
that text. Field order comes from the struct (``overlay`` then ``customization``;
inside it ``extraKernelArgs``, ``meta``, ``systemExtensions``, ``secureboot``);
empty fields are omitted except ``customization`` itself, which is ``{}`` when
empty. The factory keeps lists in the order given: it neither sorts nor
de-duplicates. Omni's infra-provider library (``buildSchematic``) sorts the
extensions and the kernel args (the request's plus the join's), keeping
duplicates, and copies only the overlay's name and image;
:meth:`Schematic.from_request` does the same, so a request made through talprov
and through Omni gets one schematic id.

Input is read with PyYAML's composer but scalars are resolved with yaml.v3's
rules (``goyaml``), so ``value: yes`` stays the string ``yes`` and ``010`` is
octal, as on the factory.
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from talprov.errors import ConfigError, yaml_error
from talprov.providers.types import MachineRequest, MetaValue, Overlay
from talprov.talos import goyaml
from talprov.talos.join import join_kernel_args, uses_documents

DEFAULT_SCHEMATIC_ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

_PLAIN = "tag:talprov.plain"
_STR = "tag:yaml.org,2002:str"
_YAML11_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF"), False),
}
# Fields of newer factory versions that talprov does not model: refusing them is
# better than computing an id for a different schematic than the user wrote.
_UNSUPPORTED = {
    "embeddedMachineConfiguration",
    "bootloader",
    "diskImage",
    "owner",
    "enrollKeys",
}


class _Loader(yaml.SafeLoader):
    """Composes nodes without PyYAML's YAML 1.1 typing: plain scalars stay untyped."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


class Schematic(BaseModel):
    """An Image Factory schematic (what the factory bakes into an image)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    overlay: Overlay | None = None
    extra_kernel_args: tuple[str, ...] = ()
    meta: tuple[MetaValue, ...] = ()
    official_extensions: tuple[str, ...] = ()
    secureboot_include_well_known_certificates: bool = False

    @classmethod
    def from_yaml(cls, text: str, where: str) -> Schematic:
        """Parse a factory schematic YAML document.

        Raises ``ConfigError`` naming ``where`` and the field path (with the line)
        for malformed YAML, unknown fields and mistyped values. Pure.
        """
        try:
            root = yaml.compose(text, Loader=_Loader)
        except yaml.YAMLError as exc:
            raise yaml_error(exc, where) from None
        return _Reader(where).schematic(root)

    @classmethod
    def from_request(cls, req: MachineRequest) -> Schematic:
        """The schematic a machine request boots from, built as Omni builds it.

        Kernel args are the request's plus, for a join in ``kernel_args`` mode,
        the join's (``siderolink.api=`` carries the join token, so the image
        itself makes the machine join on every platform), sorted as Omni sorts
        them; the overlay keeps only name and image (Omni drops its options);
        extensions arrive sorted from the request, duplicates kept as Omni keeps
        them; META values keep the request's order (duplicate keys too).
        ``secure_boot`` is deliberately not mapped to
        ``includeWellKnownCertificates``: it selects the ``-secureboot`` asset of
        the same schematic (see ``factory.asset_name``). Pure.
        """
        overlay = req.overlay
        if overlay is not None:
            overlay = Overlay(image=overlay.image, name=overlay.name)
        return cls(
            overlay=overlay,
            extra_kernel_args=schematic_kernel_args(req),
            meta=req.meta_values,
            official_extensions=req.extensions,
        )

    def __repr__(self) -> str:
        # Kernel args may hold an Omni join token: show the id only.
        try:
            return f"Schematic(id={self.id()})"
        except ValueError:  # a value canonical_yaml cannot encode
            return "Schematic(id=?)"

    __str__ = __repr__

    def is_default(self) -> bool:
        """Whether this is the stock image (the factory's empty schematic)."""
        return self.id() == DEFAULT_SCHEMATIC_ID

    def canonical_yaml(self) -> bytes:
        """The exact bytes the factory hashes (yaml.v3 ``Marshal`` of its struct).

        Raises ``ValueError`` for values yaml.v3 would emit in a way this module
        does not reproduce (e.g. carriage returns in strings).
        """
        lines: list[str] = []
        overlay = self.overlay
        if overlay is not None and (overlay.image or overlay.name or overlay.options):
            fields: list[tuple[str, Any]] = [("image", overlay.image), ("name", overlay.name)]
            if overlay.options:
                options = dict(overlay.options)
                fields.append(("options", options))
            lines += ["overlay:", *goyaml.mapping_lines(fields, goyaml.BEST_INDENT)]
        custom: list[tuple[str, Any]] = []
        if self.extra_kernel_args:
            custom.append(("extraKernelArgs", list(self.extra_kernel_args)))
        if self.meta:
            # Struct fields keep their declared order, unlike map keys.
            rows = [[("key", m.key), ("value", m.value)] for m in self.meta]
            custom.append(("meta", _Ordered(rows)))
        if self.official_extensions:
            custom.append(
                (
                    "systemExtensions",
                    _Fields([("officialExtensions", list(self.official_extensions))]),
                )
            )
        if self.secureboot_include_well_known_certificates:
            custom.append(("secureboot", _Fields([("includeWellKnownCertificates", True)])))
        if not custom:
            lines.append("customization: {}")
        else:
            lines.append("customization:")
            lines += _emit_fields(custom, goyaml.BEST_INDENT)
        return ("\n".join(lines) + "\n").encode()

    def id(self) -> str:
        """The schematic id: sha256 of :meth:`canonical_yaml`, as the factory computes it."""
        return hashlib.sha256(self.canonical_yaml()).hexdigest()

    def to_yaml(self) -> str:
        """The schematic as YAML to POST to the factory (its canonical form)."""
        return self.canonical_yaml().decode()


def schematic_kernel_args(req: MachineRequest) -> tuple[str, ...]:
    """The ``extraKernelArgs`` of a request's schematic (Omni's rule: all sorted).

    The request's kernel args plus the join's when it travels as kernel args;
    the result then holds the join token. Pure.
    """
    args = list(req.kernel_args)
    if req.join is not None and not uses_documents(req.join):
        args += join_kernel_args(req.join)
    return tuple(sorted(args))


class _Fields(list[tuple[str, Any]]):
    """A Go struct: fields emitted in declaration order, not sorted."""


class _Ordered(list[list[tuple[str, Any]]]):
    """A list of Go structs."""


def _emit_fields(fields: list[tuple[str, Any]], indent: int) -> list[str]:
    lines: list[str] = []
    child = goyaml.BEST_INDENT * ((indent + goyaml.BEST_INDENT) // goyaml.BEST_INDENT)
    for name, value in fields:
        head = " " * indent + name + ":"
        if isinstance(value, _Fields):
            lines += [head, *_emit_fields(value, child)]
        elif isinstance(value, _Ordered):
            lines.append(head)
            for row in value:
                lines += goyaml.mapping_lines(row, child + 2, first_prefix=" " * child + "- ")
        else:
            lines += goyaml.mapping_lines([(name, value)], indent)
    return lines


class _Reader:
    """Turns a composed node tree into a Schematic, naming the field on every error."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, node: yaml.Node | None, message: str) -> ConfigError:
        line = f" (line {node.start_mark.line + 1})" if node is not None else ""
        return ConfigError(f"{self.where}: {path or '<document>'}", message + line)

    def fields(self, node: yaml.Node, path: str, known: set[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(path, node, "must be a mapping")
        found: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            field = f"{path}.{key}" if path else str(key)
            if key is None or key == "<<":
                raise self.fail(path, key_node, "keys must be plain field names")
            if key in found:
                raise self.fail(field, key_node, "is given twice")
            if key not in known:
                why = (
                    "is not supported by talprov"
                    if key in _UNSUPPORTED
                    else "is not a schematic field"
                )
                raise self.fail(field, key_node, why)
            found[key] = value_node
        return found

    def is_null(self, node: yaml.Node) -> bool:
        return (
            isinstance(node, yaml.ScalarNode)
            and node.tag == _PLAIN
            and node.value in {"", "~", "null", "Null", "NULL"}
        )

    def string(self, node: yaml.Node, path: str) -> str:
        # yaml.v3 stores a scalar's source text in a string field, whatever it looks like.
        if not isinstance(node, yaml.ScalarNode) or self.is_null(node):
            raise self.fail(path, node, "must be a string")
        if node.tag not in (_PLAIN, _STR):
            raise self.fail(path, node, "YAML tags are not supported")
        return str(node.value)

    def strings(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        if self.is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(path, node, "must be a list of strings")
        return tuple(self.string(item, f"{path}[{i}]") for i, item in enumerate(node.value))

    def schematic(self, root: yaml.Node | None) -> Schematic:
        if root is None or self.is_null(root):
            return Schematic()
        top = self.fields(root, "", {"overlay", "customization"})
        overlay = self.overlay(top["overlay"]) if "overlay" in top else None
        values: dict[str, Any] = {}
        if "customization" in top and not self.is_null(top["customization"]):
            values = self.customization(top["customization"])
        return Schematic(overlay=overlay, **values)

    def overlay(self, node: yaml.Node) -> Overlay | None:
        if self.is_null(node):
            return None
        given = self.fields(node, "overlay", {"image", "name", "options"})
        image = self.string(given["image"], "overlay.image") if "image" in given else ""
        name = self.string(given["name"], "overlay.name") if "name" in given else ""
        options: dict[str, Any] = {}
        if "options" in given and not self.is_null(given["options"]):
            value = self.any_value(given["options"], "overlay.options")
            if not isinstance(value, dict):
                raise self.fail("overlay.options", given["options"], "must be a mapping")
            options = value
        if not (image or name or options):
            return None
        return Overlay(image=image, name=name, options=options)

    def customization(self, node: yaml.Node) -> dict[str, Any]:
        known = {"extraKernelArgs", "meta", "systemExtensions", "secureboot"} | _UNSUPPORTED
        given = self.fields(node, "customization", known - _UNSUPPORTED)
        values: dict[str, Any] = {}
        if "extraKernelArgs" in given:
            values["extra_kernel_args"] = self.strings(
                given["extraKernelArgs"], "customization.extraKernelArgs"
            )
        if "meta" in given:
            values["meta"] = self.meta(given["meta"])
        if "systemExtensions" in given and not self.is_null(given["systemExtensions"]):
            path = "customization.systemExtensions"
            ext = self.fields(given["systemExtensions"], path, {"officialExtensions"})
            if "officialExtensions" in ext:
                values["official_extensions"] = self.strings(
                    ext["officialExtensions"], f"{path}.officialExtensions"
                )
        if "secureboot" in given and not self.is_null(given["secureboot"]):
            path = "customization.secureboot"
            sb = self.fields(given["secureboot"], path, {"includeWellKnownCertificates"})
            if "includeWellKnownCertificates" in sb:
                values["secureboot_include_well_known_certificates"] = self.boolean(
                    sb["includeWellKnownCertificates"], f"{path}.includeWellKnownCertificates"
                )
        return values

    def meta(self, node: yaml.Node) -> tuple[MetaValue, ...]:
        if self.is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail("customization.meta", node, "must be a list of {key, value}")
        result = []
        for index, item in enumerate(node.value):
            path = f"customization.meta[{index}]"
            given = self.fields(item, path, {"key", "value"})
            key = 0
            if "key" in given:
                key_node = given["key"]
                number = (
                    goyaml.go_parse_int(key_node.value.replace("_", ""))
                    if (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _PLAIN)
                    else None
                )
                if number is None or not 0 <= number <= 255:
                    raise self.fail(f"{path}.key", key_node, "must be an integer from 0 to 255")
                key = number
            value = self.string(given["value"], f"{path}.value") if "value" in given else ""
            result.append(MetaValue(key=key, value=value))
        return tuple(result)

    def boolean(self, node: yaml.Node, path: str) -> bool:
        if isinstance(node, yaml.ScalarNode):
            text = str(node.value)
            if node.tag == _PLAIN and text in ("true", "True", "TRUE", "false", "False", "FALSE"):
                return text.lower() == "true"
            # yaml.v3 accepts YAML 1.1 spellings when the target is a bool field.
            if text in _YAML11_BOOLS:
                return _YAML11_BOOLS[text]
        raise self.fail(path, node, "must be true or false")

    def plain_key_is_string(self, node: yaml.ScalarNode) -> bool:
        try:
            return node.tag != _PLAIN or isinstance(goyaml.resolve_plain(node.value), str)
        except goyaml.GoYamlError:
            return False

    def any_value(self, node: yaml.Node, path: str) -> Any:
        """A value decoded into Go's ``any`` (overlay options)."""
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR:
                return node.value
            if node.tag != _PLAIN:
                raise self.fail(path, node, "YAML tags are not supported")
            try:
                return goyaml.resolve_plain(node.value)
            except goyaml.GoYamlError as exc:
                raise self.fail(path, node, str(exc)) from None
        if isinstance(node, yaml.SequenceNode):
            return [self.any_value(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or not self.plain_key_is_string(
                    key_node
                ):
                    raise self.fail(path, key_node, "keys must be strings")
                key = key_node.value
                if key in result:
                    raise self.fail(f"{path}.{key}", key_node, "is given twice")
                result[key] = self.any_value(value_node, f"{path}.{key}")
            return result
        raise self.fail(path, node, "unsupported YAML node")
