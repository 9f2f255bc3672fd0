"""Which CPU architecture an EC2 instance type has, from its name alone.

EC2 instance type names are ``<series><generation><attributes>.<size>``; the
attribute ``g`` marks AWS Graviton (arm64) processors (``t4g``, ``m7gd``,
``im4gn``, ``is4gen``), and ``a1`` is the first-generation Graviton. Every
other current family is x86_64. Mac families (``mac2``, ``mac-m4``) and
names that do not follow the pattern (``u-6tb1``) are left unknown: the
rule is checked against every instance type EC2 describes (moto's copy of
DescribeInstanceTypes, in the tests).
"""

from __future__ import annotations

import re

from talprov.providers.types import Arch

_FAMILY = re.compile(
    r"^(?P<series>[a-z]+)(?P<generation>\d+)(?P<attributes>[a-z]*)(?:-[a-z0-9]+)?$")


def instance_type_arch(instance_type: str) -> Arch | None:
    """The architecture of ``instance_type`` (``m6g.large`` → arm64), or None when
    its name does not tell. Pure."""
    family = instance_type.split(".", 1)[0]
    match = _FAMILY.match(family)
    if match is None or match["series"] == "mac":
        return None
    if family == "a1" or "g" in match["attributes"]:
        return Arch.ARM64
    return Arch.AMD64
