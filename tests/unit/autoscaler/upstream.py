"""The upstream externalgrpc client and k8s ``v1.Node``, generated from tests/data.

grpcio-tools compiles tests/data/externalgrpc (unchanged upstream files) into a
temporary directory once per test session; talprov itself never imports this.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc_tools
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

DATA = Path(__file__).resolve().parents[2] / "data" / "externalgrpc"
CORE = "k8s.io/api/core/v1/generated.proto"


class Upstream:
    """``pb2``/``pb2_grpc``: the generated externalgrpc modules; :meth:`node` decodes
    nodeBytes with the real ``k8s.io.api.core.v1.Node``."""

    def __init__(self, out: Path) -> None:
        include = str(Path(grpc_tools.__file__).parent / "_proto")
        args = ["protoc", f"-I{DATA}", f"-I{include}", f"--python_out={out}",
                f"--grpc_python_out={out}", "externalgrpc.proto"]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed on externalgrpc.proto")
        descriptors = out / "k8s.pb"
        if protoc.main(["protoc", f"-I{DATA}", f"-I{include}", "--include_imports",
                        f"--descriptor_set_out={descriptors}", CORE]) != 0:
            raise RuntimeError(f"protoc failed on {CORE}")
        sys.path.insert(0, str(out))
        self.pb2: ModuleType = importlib.import_module("externalgrpc_pb2")
        self.pb2_grpc: ModuleType = importlib.import_module("externalgrpc_pb2_grpc")
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptors.read_bytes())
        self._pool = descriptor_pool.DescriptorPool()
        for file in files.file:
            self._pool.Add(file)

    def message_descriptor(self, full_name: str) -> Any:
        """The upstream descriptor of a k8s message, e.g. ``k8s.io.api.core.v1.Node``."""
        return self._pool.FindMessageTypeByName(full_name)

    def node(self, data: bytes) -> Any:
        """``data`` parsed as the upstream ``v1.Node``."""
        cls = message_factory.GetMessageClass(self.message_descriptor("k8s.io.api.core.v1.Node"))
        return cls.FromString(data)
