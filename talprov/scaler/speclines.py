"""The line of a spec file a field's error is about.

A spec's documents are checked after YAML parsing, which keeps no lines, so an
error could name the document and the field but not where to look (QA). The
stream is parsed again into YAML nodes, which do keep them, only when an error
is raised: loading a good spec costs nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from talprov.scaler.configtext import SAFE_LOADER


def line_of(text: str, number: int, loc: Sequence[Any]) -> int | None:
    """The 1-based line of the field at pydantic location ``loc`` in document
    ``number`` (1-based, empty documents counted) of the YAML stream ``text``:
    the line of its key; as far as ``loc`` leads when a part of it is not in
    the document (a missing field: its mapping's line); None when the stream
    cannot be parsed again or has no such document. Pure."""
    try:
        nodes = list(yaml.compose_all(text, Loader=SAFE_LOADER))
    except yaml.YAMLError:
        return None
    if not 1 <= number <= len(nodes):
        return None
    node: yaml.Node = nodes[number - 1]
    line = node.start_mark.line
    for part in loc:
        found = _child(node, part)
        if found is None:
            break
        line, node = found
    return line + 1


def _child(node: yaml.Node, part: Any) -> tuple[int, yaml.Node] | None:
    """(0-based line, node) of ``part`` inside ``node``: a mapping's key (the
    key's line) or a sequence's index; None when it has none."""
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return key.start_mark.line, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
            and 0 <= part < len(node.value):
        item = node.value[part]
        return item.start_mark.line, item
    return None


def at_line(message: str, line: int | None) -> str:
    """``message`` with `` (line N)`` when the line is known. Pure."""
    return message if line is None else f"{message} (line {line})"
