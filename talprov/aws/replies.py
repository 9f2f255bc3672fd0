"""DescribeInstances and RunInstances replies parsed into only what talprov reads.

botocore turns every element of a reply into Python objects along EC2's model.
An instance there has some sixty members (block devices, every detail of every
network interface, CPU, metadata, maintenance and hibernation options, ...);
talprov reads about fifteen of them (:data:`INSTANCE_MEMBERS`). Walking the
rest is most of the client's CPU in a listing: about half of the parse of a
100-instance DescribeInstances reply, paid in every pass's listing and on the
critical path of every launch (RunInstances returns the same instances).

:class:`LeanParsers` is a botocore response-parser factory that hands EC2's
parser a copy of those two replies' shapes in which the instance (and the few
structures under it talprov reads) keep only those members. Everything else is
botocore's own: the query protocol, error replies, types, pagination tokens, the
timestamp parser. Members left out are simply absent from the parsed dict, as
EC2 leaves out members it has no value for, so every reader already treats
them as optional.

Reading a member not listed here gives None, silently: whoever reads a new
instance member from a reply adds it to :data:`KEPT` (the lean and the full
parse of the same replies are compared by tests/unit/aws/test_replies.py).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import botocore.loaders
import botocore.model
from botocore.parsers import EC2QueryParser, ResponseParserFactory

#: The members of an instance that talprov reads (instances.machine_from_instance,
#: request_of's tags and launch index, the ownership check of describe_one).
INSTANCE_MEMBERS = frozenset({
    "AmiLaunchIndex", "ImageId", "InstanceId", "InstanceLifecycle", "InstanceType",
    "LaunchTime", "NetworkInterfaces", "Placement", "PrivateIpAddress", "PublicIpAddress",
    "State", "StateReason", "SubnetId", "Tags",
})
#: Every shape cut down, with the members it keeps. Shapes not named here
#: (Tag, InstanceState, StateReason, ...) are small and kept whole.
KEPT: Mapping[str, frozenset[str]] = {
    "Instance": INSTANCE_MEMBERS,
    "InstanceNetworkInterface": frozenset({"PrivateIpAddresses", "Ipv6Addresses"}),
    "InstancePrivateIpAddress": frozenset({"PrivateIpAddress"}),
    "Placement": frozenset({"AvailabilityZone"}),
}
#: The output shapes parsed leanly: DescribeInstances' and RunInstances' replies.
LEAN_OUTPUTS = ("DescribeInstancesResult", "Reservation")


def lean_shapes(shapes: Mapping[str, Any]) -> dict[str, Any]:
    """``shapes`` (an EC2 model's shape definitions) with the :data:`KEPT` shapes cut
    down to their kept members. Pure: ``shapes`` is not changed."""
    lean = dict(shapes)
    for name, members in KEPT.items():
        model = shapes[name]
        lean[name] = {**model, "members": {k: v for k, v in model["members"].items()
                                           if k in members}}
    return lean


class _LeanEc2Parser(EC2QueryParser):
    """EC2's parser, parsing the replies in ``lean`` by their lean shape."""

    def __init__(self, lean: Mapping[str, botocore.model.Shape], **defaults: Any) -> None:
        super().__init__(**defaults)
        self._lean = lean

    def parse(self, response: Mapping[str, Any], shape: botocore.model.Shape) -> Any:
        # botocore passes None for operations without output; an error reply is
        # parsed by the error shape whatever comes here.
        if shape is not None:
            shape = self._lean.get(shape.name, shape)
        return super().parse(response, shape)


class LeanParsers(ResponseParserFactory):
    """botocore's parser factory, but EC2's parser reads the instance replies leanly.

    Register it as a botocore session's ``response_parser_factory`` before any
    client is made. The lean shapes are built from ``loader``'s newest EC2 model
    (the one clients use unless told an API version) on the first EC2 reply.
    """

    def __init__(self, loader: botocore.loaders.Loader) -> None:
        super().__init__()
        self._loader = loader
        self._lock = threading.Lock()
        self._lean: dict[str, botocore.model.Shape] | None = None
        self._parser_defaults: dict[str, Any] = {}

    def set_parser_defaults(self, **kwargs: Any) -> None:
        """As botocore's (e.g. ``timestamp_parser``); the lean EC2 parser gets them too."""
        super().set_parser_defaults(**kwargs)
        self._parser_defaults.update(kwargs)

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name != "ec2":
            return super().create_parser(protocol_name)
        return _LeanEc2Parser(self._lean_outputs(), **self._parser_defaults)

    def _lean_outputs(self) -> Mapping[str, botocore.model.Shape]:
        with self._lock:
            if self._lean is None:
                model = self._loader.load_service_model("ec2", "service-2")
                resolver = botocore.model.ShapeResolver(lean_shapes(model["shapes"]))
                self._lean = {name: resolver.get_shape_by_name(name) for name in LEAN_OUTPUTS}
            return self._lean
