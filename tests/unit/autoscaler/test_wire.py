"""talprov's wire definition against the upstream .proto files, field by field."""

from __future__ import annotations

from typing import Any

from talprov.autoscaler import wire
from tests.unit.autoscaler.upstream import Upstream

LATER_FIELDS = {"NodeGroupAutoscalingOptions": (11, 12)}


def shape(message: Any) -> dict[str, Any]:
    """A message's wire-relevant facts: per field number its type, label, message or
    enum type, and nested messages (map entries) and enums."""
    fields = {f.number: (f.type, f.is_repeated, f.message_type.full_name if f.message_type else "",
                         f.enum_type.full_name if f.enum_type else "")
              for f in message.fields}
    nested = {n.name: shape(n) for n in message.nested_types}
    enums = {e.name: {v.name: v.number for v in e.values} for e in message.enum_types}
    return {"fields": fields, "nested": nested, "enums": enums,
            "map_entry": message.GetOptions().map_entry}


def test_every_message_and_method_matches_upstream(upstream: Upstream) -> None:
    theirs = upstream.pb2.DESCRIPTOR
    ours = wire.POOL.FindFileByName("talprov/externalgrpc.proto")
    assert ours.package == theirs.package == wire.PACKAGE
    assert sorted(ours.message_types_by_name) == sorted(theirs.message_types_by_name)
    for name, message in theirs.message_types_by_name.items():
        mine = shape(ours.message_types_by_name[name])
        # Fields newer autoscalers send in their defaults (upstream after the copy in
        # tests/data); everything else must be identical.
        for number in LATER_FIELDS.get(name, ()):
            assert number not in message.fields_by_number
            del mine["fields"][number]
        assert mine == shape(message), name
    their_service = theirs.services_by_name["CloudProvider"]
    our_service = ours.services_by_name["CloudProvider"]
    assert our_service.full_name == their_service.full_name == wire.SERVICE
    assert {m.name: (m.input_type.full_name, m.output_type.full_name)
            for m in our_service.methods} == {
        m.name: (m.input_type.full_name, m.output_type.full_name)
        for m in their_service.methods}


def test_the_template_node_fields_match_k8s(upstream: Upstream) -> None:
    """Each field talprov fills has the number and type k8s.io/api gives it."""
    checked = 0
    for file_name in ("talprov/k8s/resource.proto", "talprov/k8s/meta.proto",
                      "talprov/k8s/core.proto"):
        ours = wire.POOL.FindFileByName(file_name)
        for name, message in ours.message_types_by_name.items():
            theirs = upstream.message_descriptor(f"{ours.package}.{name}")
            for field in message.fields:
                match = theirs.fields_by_number[field.number]
                assert (field.name, field.type, field.is_repeated) == (
                    match.name, match.type, match.is_repeated), f"{name}.{field.name}"
                if field.message_type is not None:
                    assert field.message_type.full_name.split(".")[-1] == \
                        match.message_type.full_name.split(".")[-1]
                checked += 1
    assert checked == 18
