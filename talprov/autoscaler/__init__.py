"""The Kubernetes Cluster Autoscaler's ``externalgrpc`` cloud provider.

* :mod:`~talprov.autoscaler.wire`: the gRPC contract as Python-built descriptors;
* :mod:`~talprov.autoscaler.groups`: node groups (autoscaled machine sets) and
  their size changes under the cluster lease;
* :mod:`~talprov.autoscaler.providerids`: Kubernetes providerIDs per platform;
* :mod:`~talprov.autoscaler.template`: the template node of a group;
* :mod:`~talprov.autoscaler.server`: the gRPC server (mutual TLS);
* :mod:`~talprov.autoscaler.config`: the ``service.autoscaler`` block.

Importing this package imports nothing else; its modules need the
``autoscaler`` extra (grpcio, protobuf).
"""
