"""The externalgrpc wire contract, written as protobuf descriptors in Python.

The Cluster Autoscaler's ``externalgrpc`` cloud provider speaks the service
``clusterautoscaler.cloudprovider.v1.externalgrpc.CloudProvider``. Building the
message classes here at import time (``descriptor_pb2`` + ``message_factory``)
keeps grpcio-tools and generated code out of the runtime: only ``grpcio`` and
``protobuf`` are needed. Package, service, method, message and field numbers
and types follow the upstream definition exactly; the tests compile the
upstream ``.proto`` and talk to this server with the generated client.

The template node is a proto-serialised ``k8s.io.api.core.v1.Node``; only the
few fields talprov fills are described (unknown fields are simply absent).

Descriptors live in a private pool, so a process that also loads generated code
for the same names (the tests do) sees no duplicate symbols.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    message_factory,
    timestamp_pb2,
)

PACKAGE = "clusterautoscaler.cloudprovider.v1.externalgrpc"
SERVICE = f"{PACKAGE}.CloudProvider"

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _F.TYPE_STRING, "int32": _F.TYPE_INT32, "bool": _F.TYPE_BOOL,
    "double": _F.TYPE_DOUBLE, "bytes": _F.TYPE_BYTES,
}
#: A field: (name, number, type, label) where type is a scalar name, ``.pkg.Msg``
#: (a message), ``enum:.pkg.Enum`` or ``map:<key>:<value>`` and label is
#: "" (singular), "repeated" or "optional" (proto2).
Field = tuple[str, int, str, str]

# (name, number, type, label) of each message, as in upstream externalgrpc.proto.
_EG = f".{PACKAGE}"
_TS = ".google.protobuf.Timestamp"
_DUR = ".google.protobuf.Duration"
_NODE_FIELDS: list[Field] = [
    ("providerID", 1, "string", ""), ("name", 2, "string", ""),
    ("labels", 3, "map:string:string", ""), ("annotations", 4, "map:string:string", ""),
]
_GROUP: list[Field] = [("id", 1, "string", ""), ("minSize", 2, "int32", ""),
                       ("maxSize", 3, "int32", ""), ("debug", 4, "string", "")]
_ID_ONLY: list[Field] = [("id", 1, "string", "")]
_DELTA_ID: list[Field] = [("delta", 1, "int32", ""), ("id", 2, "string", "")]
_OPTIONS: list[Field] = [
    ("scaleDownUtilizationThreshold", 1, "double", ""),
    ("scaleDownGpuUtilizationThreshold", 2, "double", ""),
    ("zeroOrMaxNodeScaling", 6, "bool", ""),
    ("ignoreDaemonSetsUtilization", 7, "bool", ""),
    ("scaleDownUnneededDuration", 8, _DUR, ""),
    ("scaleDownUnreadyDuration", 9, _DUR, ""),
    ("MaxNodeProvisionDuration", 10, _DUR, ""),
    # 11 and 12 came later upstream; described so that the defaults a newer
    # autoscaler sends are echoed back as typed fields.
    ("maxNodeStartupDuration", 11, _DUR, ""),
    ("allowNonAtomicScaleUpToMax", 12, "bool", ""),
]
_MESSAGES: dict[str, list[Field]] = {
    "NodeGroup": _GROUP,
    "ExternalGrpcNode": _NODE_FIELDS,
    "NodeGroupsRequest": [],
    "NodeGroupsResponse": [("nodeGroups", 1, f"{_EG}.NodeGroup", "repeated")],
    "NodeGroupForNodeRequest": [("node", 1, f"{_EG}.ExternalGrpcNode", "")],
    "NodeGroupForNodeResponse": [("nodeGroup", 1, f"{_EG}.NodeGroup", "")],
    "PricingNodePriceRequest": [("node", 1, f"{_EG}.ExternalGrpcNode", ""),
                                ("startTimestamp", 4, _TS, ""), ("endTimestamp", 5, _TS, "")],
    "PricingNodePriceResponse": [("price", 1, "double", "")],
    "PricingPodPriceRequest": [("pod_bytes", 4, "bytes", ""),
                               ("startTimestamp", 5, _TS, ""), ("endTimestamp", 6, _TS, "")],
    "PricingPodPriceResponse": [("price", 1, "double", "")],
    "GPULabelRequest": [],
    "GPULabelResponse": [("label", 1, "string", "")],
    "GetAvailableGPUTypesRequest": [],
    "GetAvailableGPUTypesResponse": [("gpuTypes", 1, "map:string:.google.protobuf.Any", "")],
    "CleanupRequest": [], "CleanupResponse": [],
    "RefreshRequest": [], "RefreshResponse": [],
    "NodeGroupTargetSizeRequest": _ID_ONLY,
    "NodeGroupTargetSizeResponse": [("targetSize", 1, "int32", "")],
    "NodeGroupIncreaseSizeRequest": _DELTA_ID,
    "NodeGroupIncreaseSizeResponse": [],
    "NodeGroupDeleteNodesRequest": [("nodes", 1, f"{_EG}.ExternalGrpcNode", "repeated"),
                                    ("id", 2, "string", "")],
    "NodeGroupDeleteNodesResponse": [],
    "NodeGroupDecreaseTargetSizeRequest": _DELTA_ID,
    "NodeGroupDecreaseTargetSizeResponse": [],
    "NodeGroupNodesRequest": _ID_ONLY,
    "NodeGroupNodesResponse": [("instances", 1, f"{_EG}.Instance", "repeated")],
    "Instance": [("id", 1, "string", ""), ("status", 2, f"{_EG}.InstanceStatus", "")],
    "InstanceStatus": [
        ("instanceState", 1, f"enum:{_EG}.InstanceStatus.InstanceState", ""),
        ("errorInfo", 2, f"{_EG}.InstanceErrorInfo", ""),
    ],
    "InstanceErrorInfo": [("errorCode", 1, "string", ""), ("errorMessage", 2, "string", ""),
                          ("instanceErrorClass", 3, "int32", "")],
    "NodeGroupTemplateNodeInfoRequest": _ID_ONLY,
    # Newer upstream versions add ``repeated bytes resourceSliceBytes = 3`` (DRA
    # slices); talprov sends none, and older and newer clients read field 2 alike.
    "NodeGroupTemplateNodeInfoResponse": [("nodeBytes", 2, "bytes", "")],
    "NodeGroupAutoscalingOptions": _OPTIONS,
    "NodeGroupAutoscalingOptionsRequest": [
        ("id", 1, "string", ""), ("defaults", 2, f"{_EG}.NodeGroupAutoscalingOptions", "")],
    "NodeGroupAutoscalingOptionsResponse": [
        ("nodeGroupAutoscalingOptions", 1, f"{_EG}.NodeGroupAutoscalingOptions", "")],
}
#: InstanceStatus.InstanceState values (upstream enum, same numbers).
INSTANCE_STATES = {"unspecified": 0, "instanceRunning": 1, "instanceCreating": 2,
                   "instanceDeleting": 3}
#: Each rpc of the service: (method, request message, response message).
METHODS: tuple[tuple[str, str, str], ...] = (
    ("NodeGroups", "NodeGroupsRequest", "NodeGroupsResponse"),
    ("NodeGroupForNode", "NodeGroupForNodeRequest", "NodeGroupForNodeResponse"),
    ("PricingNodePrice", "PricingNodePriceRequest", "PricingNodePriceResponse"),
    ("PricingPodPrice", "PricingPodPriceRequest", "PricingPodPriceResponse"),
    ("GPULabel", "GPULabelRequest", "GPULabelResponse"),
    ("GetAvailableGPUTypes", "GetAvailableGPUTypesRequest", "GetAvailableGPUTypesResponse"),
    ("Cleanup", "CleanupRequest", "CleanupResponse"),
    ("Refresh", "RefreshRequest", "RefreshResponse"),
    ("NodeGroupTargetSize", "NodeGroupTargetSizeRequest", "NodeGroupTargetSizeResponse"),
    ("NodeGroupIncreaseSize", "NodeGroupIncreaseSizeRequest", "NodeGroupIncreaseSizeResponse"),
    ("NodeGroupDeleteNodes", "NodeGroupDeleteNodesRequest", "NodeGroupDeleteNodesResponse"),
    ("NodeGroupDecreaseTargetSize", "NodeGroupDecreaseTargetSizeRequest",
     "NodeGroupDecreaseTargetSizeResponse"),
    ("NodeGroupNodes", "NodeGroupNodesRequest", "NodeGroupNodesResponse"),
    ("NodeGroupTemplateNodeInfo", "NodeGroupTemplateNodeInfoRequest",
     "NodeGroupTemplateNodeInfoResponse"),
    ("NodeGroupGetOptions", "NodeGroupAutoscalingOptionsRequest",
     "NodeGroupAutoscalingOptionsResponse"),
)

# The subset of k8s.io/api core/v1 (and apimachinery) a template node needs; field
# numbers from kubernetes/api core/v1/generated.proto and apimachinery's
# pkg/apis/meta/v1 and pkg/api/resource generated.proto (all proto2).
_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
_RESOURCE = "k8s.io.apimachinery.pkg.api.resource"
_CORE = "k8s.io.api.core.v1"
_K8S_FILES: dict[str, tuple[str, dict[str, list[Field]]]] = {
    "talprov/k8s/resource.proto": (_RESOURCE, {"Quantity": [("string", 1, "string",
                                                             "optional")]}),
    "talprov/k8s/meta.proto": (_META, {"ObjectMeta": [
        ("name", 1, "string", "optional"), ("labels", 11, "map:string:string", ""),
        ("annotations", 12, "map:string:string", "")]}),
    "talprov/k8s/core.proto": (_CORE, {
        "Node": [("metadata", 1, f".{_META}.ObjectMeta", "optional"),
                 ("spec", 2, f".{_CORE}.NodeSpec", "optional"),
                 ("status", 3, f".{_CORE}.NodeStatus", "optional")],
        "NodeSpec": [("providerID", 3, "string", "optional"),
                     ("taints", 5, f".{_CORE}.Taint", "repeated")],
        "Taint": [("key", 1, "string", "optional"), ("value", 2, "string", "optional"),
                  ("effect", 3, "string", "optional")],
        "NodeStatus": [("capacity", 1, f"map:string:.{_RESOURCE}.Quantity", ""),
                       ("allocatable", 2, f"map:string:.{_RESOURCE}.Quantity", ""),
                       ("phase", 3, "string", "optional"),
                       ("conditions", 4, f".{_CORE}.NodeCondition", "repeated")],
        "NodeCondition": [("type", 1, "string", "optional"), ("status", 2, "string", "optional")],
    }),
}


def _set_type(field: Any, kind: str) -> None:
    if kind in _SCALARS:
        field.type = _SCALARS[kind]
    elif kind.startswith("enum:"):
        field.type = _F.TYPE_ENUM
        field.type_name = kind[len("enum:"):]
    else:
        field.type = _F.TYPE_MESSAGE
        field.type_name = kind


def _add_message(container: Any, scope: str, name: str, fields: list[Field]) -> Any:
    message = container.add(name=name)
    for field_name, number, kind, label in fields:
        field = message.field.add(name=field_name, number=number, json_name=field_name)
        if kind.startswith("map:"):
            # A map is a repeated nested "<Name>Entry" message with map_entry set.
            _, key_kind, value_kind = kind.split(":", 2)
            entry_name = field_name[0].upper() + field_name[1:] + "Entry"
            entry = _add_message(message.nested_type, f"{scope}.{name}", entry_name,
                                 [("key", 1, key_kind, "optional"),
                                  ("value", 2, value_kind, "optional")])
            entry.options.map_entry = True
            field.label = _F.LABEL_REPEATED
            _set_type(field, f"{scope}.{name}.{entry_name}")
            continue
        field.label = _F.LABEL_REPEATED if label == "repeated" else _F.LABEL_OPTIONAL
        _set_type(field, kind)
    return message


def _file(name: str, package: str, syntax: str, messages: dict[str, list[Field]],
          dependencies: list[str]) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax=syntax)
    proto.dependency.extend(dependencies)
    for message_name, fields in messages.items():
        _add_message(proto.message_type, f".{package}", message_name, fields)
    return proto


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for module in (any_pb2, timestamp_pb2, duration_pb2):
        well_known = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(well_known)
        pool.Add(well_known)
    service_file = _file("talprov/externalgrpc.proto", PACKAGE, "proto3", _MESSAGES,
                         ["google/protobuf/any.proto", "google/protobuf/timestamp.proto",
                          "google/protobuf/duration.proto"])
    status = next(m for m in service_file.message_type if m.name == "InstanceStatus")
    state_enum = status.enum_type.add(name="InstanceState")
    for value_name, number in INSTANCE_STATES.items():
        state_enum.value.add(name=value_name, number=number)
    service = service_file.service.add(name="CloudProvider")
    for method, request, response in METHODS:
        service.method.add(name=method, input_type=f"{_EG}.{request}",
                           output_type=f"{_EG}.{response}")
    pool.Add(service_file)
    previous: list[str] = []
    for file_name, (package, messages) in _K8S_FILES.items():
        pool.Add(_file(file_name, package, "proto2", messages, list(previous)))
        previous.append(file_name)
    return pool


POOL = _build_pool()


def message_class(name: str) -> Any:
    """The message class of an externalgrpc message (``"NodeGroup"``) or a k8s one
    given by full name (``"k8s.io.api.core.v1.Node"``). Raises KeyError for others."""
    full = name if "." in name else f"{PACKAGE}.{name}"
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full))


def message(name: str, **fields: Any) -> Any:
    """A new message ``name`` with ``fields`` set. Raises KeyError/ValueError/TypeError."""
    return message_class(name)(**fields)
