"""The gRPC server of the externalgrpc ``CloudProvider`` service.

Calls are served by grpc generic handlers over the message classes of
:mod:`talprov.autoscaler.wire`; each handler turns its request into a
:class:`~talprov.autoscaler.groups.NodeGroups` call and its ``GroupError`` into a
gRPC status with the message. Pricing is answered UNIMPLEMENTED (code 12), as
the proto asks of providers without prices.

Transport: mutual TLS (the server's cert and key, and the CA client certificates
must chain to, as the autoscaler's ``--cloud-config`` gives its side), or plain
on a loopback address when explicitly allowed.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc

from talprov.autoscaler.groups import Group, GroupError, NodeGroups, NodeRef
from talprov.autoscaler.template import class_capacity, node_bytes, node_labels
from talprov.autoscaler.wire import INSTANCE_STATES, METHODS, SERVICE, message, message_class
from talprov.errors import ConfigError
from talprov.providers.errors import ProviderError
from talprov.secrets import redact

log = logging.getLogger(__name__)

#: The node label the autoscaler reads GPU types from. No talprov set declares
#: GPUs, so there is none: the empty label, as the autoscaler's own providers
#: without GPU node groups answer (Linode, UpCloud, OCI); a made-up label would
#: make the autoscaler look for GPU types on nodes that never carry it.
GPU_LABEL = ""
_STATES = {"running": INSTANCE_STATES["instanceRunning"],
           "creating": INSTANCE_STATES["instanceCreating"],
           "deleting": INSTANCE_STATES["instanceDeleting"]}


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate and key, and the CA of client certificates."""

    cert: Path
    key: Path
    ca: Path
    #: How error messages name this block (e.g. ``talprov.yaml: service.autoscaler.tls``).
    where: str = "tls"

    def credentials(self) -> Any:
        """Server credentials that require a client certificate from ``ca``.
        Raises ConfigError naming the unreadable file."""
        blobs: dict[str, bytes] = {}
        for name in ("cert", "key", "ca"):
            path = getattr(self, name)
            try:
                blobs[name] = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{self.where}.{name}", f"{path}: {exc.strerror}") from None
        self._check_pem()
        return grpc.ssl_server_credentials([(blobs["key"], blobs["cert"])],
                                           root_certificates=blobs["ca"],
                                           require_client_auth=True)


    def _check_pem(self) -> None:
        # gRPC reports unusable PEM only as a failed bind; Python's ssl names the
        # problem (e.g. KEY_VALUES_MISMATCH) without showing the files' content.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise ConfigError(self.where, f"cannot use {self.cert} with {self.key}: "
                                          f"{reason}") from None
        try:
            context.load_verify_locations(cafile=self.ca)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise ConfigError(f"{self.where}.ca", f"{self.ca}: not a PEM CA certificate "
                                                  f"({reason})") from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _group_message(group: Group | None) -> Any:
    if group is None:
        return message("NodeGroup", id="")
    return message("NodeGroup", id=group.id, minSize=group.bounds.min,
                   maxSize=group.bounds.max, debug=group.debug)


def _set_duration(field: Any, duration: timedelta) -> None:
    micros = round(duration.total_seconds() * 1_000_000)
    field.seconds, field.nanos = divmod(micros, 1_000_000)
    field.nanos *= 1000


class CloudProviderService:
    """One handler per rpc, on a :class:`NodeGroups`."""

    def __init__(self, groups: NodeGroups) -> None:
        self.groups = groups

    # Each handler takes (request, context) like grpc's and returns the response.
    def NodeGroups(self, _request: Any) -> Any:
        return message("NodeGroupsResponse",
                       nodeGroups=[_group_message(g) for g in self.groups.groups()])

    def NodeGroupForNode(self, request: Any) -> Any:
        node = NodeRef(request.node.providerID, request.node.name)
        return message("NodeGroupForNodeResponse",
                       nodeGroup=_group_message(self.groups.group_for_node(node)))

    def PricingNodePrice(self, _request: Any) -> Any:
        raise GroupError("UNIMPLEMENTED", "talprov has no prices")

    def PricingPodPrice(self, _request: Any) -> Any:
        raise GroupError("UNIMPLEMENTED", "talprov has no prices")

    def GPULabel(self, _request: Any) -> Any:
        return message("GPULabelResponse", label=GPU_LABEL)

    def GetAvailableGPUTypes(self, _request: Any) -> Any:
        return message("GetAvailableGPUTypesResponse")

    def Cleanup(self, _request: Any) -> Any:
        return message("CleanupResponse")

    def Refresh(self, _request: Any) -> Any:
        self.groups.refresh()
        return message("RefreshResponse")

    def NodeGroupTargetSize(self, request: Any) -> Any:
        return message("NodeGroupTargetSizeResponse",
                       targetSize=self.groups.target_size(request.id))

    def NodeGroupIncreaseSize(self, request: Any) -> Any:
        self.groups.increase(request.id, request.delta)
        return message("NodeGroupIncreaseSizeResponse")

    def NodeGroupDeleteNodes(self, request: Any) -> Any:
        nodes = [NodeRef(n.providerID, n.name) for n in request.nodes]
        self.groups.delete_nodes(request.id, nodes)
        return message("NodeGroupDeleteNodesResponse")

    def NodeGroupDecreaseTargetSize(self, request: Any) -> Any:
        self.groups.decrease_target(request.id, request.delta)
        return message("NodeGroupDecreaseTargetSizeResponse")

    def NodeGroupNodes(self, request: Any) -> Any:
        response = message("NodeGroupNodesResponse")
        for view in self.groups.instances(request.id):
            instance = response.instances.add(id=view.id)
            instance.status.instanceState = _STATES[view.state]
            if view.error_class is not None:
                instance.status.errorInfo.errorCode = view.error_code
                instance.status.errorInfo.errorMessage = view.error_message
                instance.status.errorInfo.instanceErrorClass = view.error_class
        return response

    def NodeGroupTemplateNodeInfo(self, request: Any) -> Any:
        state, machine_set, _bounds = self.groups.group(request.id)
        machine_class = state.spec.machine_classes[machine_set.machine_class]
        handle = self.groups.scaler.handles.get(machine_class.provider)
        if handle is None:
            raise GroupError("FAILED_PRECONDITION", f"provider instance "
                                                    f"{machine_class.provider} is not configured")
        capacity = class_capacity(handle.provider, machine_class)
        domains = [d.name for d in machine_class.failure_domains]
        zone = domains[0] if len(domains) == 1 else None
        labels = node_labels(machine_set.name, request.id, machine_set,
                             machine_class.arch.value, zone)
        name = f"{request.id.replace('/', '-')}-template"
        return message("NodeGroupTemplateNodeInfoResponse",
                       nodeBytes=node_bytes(name, labels, machine_set, capacity))

    def NodeGroupGetOptions(self, request: Any) -> Any:
        _state, _set, bounds = self.groups.group(request.id)
        options = message("NodeGroupAutoscalingOptions")
        options.CopyFrom(request.defaults)
        overrides = bounds.options
        if overrides.scale_down_utilization_threshold is not None:
            options.scaleDownUtilizationThreshold = overrides.scale_down_utilization_threshold
        if overrides.scale_down_gpu_utilization_threshold is not None:
            options.scaleDownGpuUtilizationThreshold = (
                overrides.scale_down_gpu_utilization_threshold)
        for name, value in (("scaleDownUnneededDuration", overrides.scale_down_unneeded_time),
                            ("scaleDownUnreadyDuration", overrides.scale_down_unready_time),
                            ("MaxNodeProvisionDuration", overrides.max_node_provision_time)):
            if value is not None:
                _set_duration(getattr(options, name), value)
        return message("NodeGroupAutoscalingOptionsResponse", nodeGroupAutoscalingOptions=options)


def _wrap(handler: Callable[[Any], Any], method: str) -> Callable[[Any, Any], Any]:
    def call(request: Any, context: Any) -> Any:
        try:
            return handler(request)
        except GroupError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), exc.message)
        except ConfigError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except ProviderError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, redact(str(exc)))
        except Exception as exc:
            log.exception("autoscaler call %s failed", method)
            context.abort(grpc.StatusCode.INTERNAL, f"{method} failed: {type(exc).__name__}")
        return None  # pragma: no cover - abort raises

    return call


def generic_handler(service: CloudProviderService) -> Any:
    """The grpc generic handler of every rpc of ``service``."""
    handlers = {}
    for method, request, response in METHODS:
        handlers[method] = grpc.unary_unary_rpc_method_handler(
            _wrap(getattr(service, method), method),
            request_deserializer=message_class(request).FromString,
            response_serializer=message_class(response).SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


class AutoscalerServer:
    """A started gRPC server: :meth:`start` binds, :meth:`stop` ends it."""

    def __init__(self, groups: NodeGroups, *, host: str, port: int,
                 tls: TlsFiles | None, allow_plain: bool = False,
                 max_workers: int = 8) -> None:
        if tls is None and not (allow_plain and is_loopback(host)):
            raise ConfigError("tls", "mutual TLS is required (plain gRPC only on a loopback "
                                     "address and only when asked)")
        self.host, self.port, self.tls = host, port, tls
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
        self.server.add_generic_rpc_handlers((generic_handler(CloudProviderService(groups)),))
        self.bound_port = 0

    def start(self) -> int:
        """Bind and start serving; the bound port. Raises ConfigError when the
        address cannot be bound or the TLS files cannot be read."""
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            if self.tls is None:
                self.bound_port = self.server.add_insecure_port(address)
            else:
                self.bound_port = self.server.add_secure_port(address, self.tls.credentials())
        except RuntimeError as exc:
            raise ConfigError("listen", f"cannot bind {address}: {exc}") from None
        self.server.start()
        return self.bound_port

    def stop(self, grace: float = 5.0) -> None:
        """Stop taking calls and finish the running ones within ``grace`` seconds."""
        self.server.stop(grace).wait()
