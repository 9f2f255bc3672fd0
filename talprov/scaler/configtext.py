"""YAML loading shared by the spec parser, and the RFC 7386 merge used for
failure-domain provider_data overrides.

Machine config patches are applied by :mod:`talprov.talos.machineconfig`, the
one patch implementation of talprov.
"""

from __future__ import annotations

from typing import Any

import yaml

from talprov.errors import refuse_duplicate_keys
from talprov.talos.machineconfig import merge_patch

_FAST: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyFastLoader(_FAST):  # type: ignore[valid-type,misc]
    """libyaml's loader when present (an order of magnitude faster on big specs),
    refusing a key given twice in one mapping as every talprov file does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        refuse_duplicate_keys(node)
        result: dict[Any, Any] = super().construct_mapping(node, deep)
        return result


SAFE_LOADER: type[yaml.SafeLoader] = _UniqueKeyFastLoader

__all__ = ["SAFE_LOADER", "merge_patch"]
