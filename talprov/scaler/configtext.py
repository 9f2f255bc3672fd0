"""YAML loading shared by the spec parser, and the RFC 7386 merge used for
failure-domain provider_data overrides.

Machine config patches are applied by :mod:`talprov.talos.machineconfig`, the
one patch implementation of talprov.
"""

from __future__ import annotations

import yaml

from talprov.talos.machineconfig import merge_patch

# libyaml's loader when present: it is an order of magnitude faster on big specs.
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

__all__ = ["SAFE_LOADER", "merge_patch"]
