"""The packed member list that ties batch-launched instances to their requests."""

from __future__ import annotations

import random
import string
from unittest.mock import patch

from talprov.aws.members import (
    MAX_TAGS,
    TAG_VALUE_LIMIT,
    chunk_members,
    member_capacity,
    member_tags,
    members_of,
    pack_members,
    request_of,
    unpack_members,
)
from talprov.providers.ownership import REQUEST_KEY


def _scaler_ids(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + string.digits
    ids = {f"prod-workers-{''.join(rng.choice(alphabet) for _ in range(5))}"
           for _ in range(count)}
    return sorted(ids)


def test_pack_round_trips_ids_of_every_shape() -> None:
    cases = [
        ["a"],
        ["a", "a-b", "a-b-c", "b"],
        [f"node-{i:04d}" for i in range(1000)],
        _scaler_ids(1000),
        sorted({"m-" + "".join(random.Random(i).choice("0123456789abcdef") for _ in range(10))
                for i in range(300)}),
        ["x" * 63, "x" * 62 + "y", "y" * 63],  # longer shared prefixes than one digit says
    ]
    for ids in cases:
        assert unpack_members(pack_members(ids)) == ids


def test_ids_of_one_machine_set_cost_a_few_characters_each() -> None:
    ids = _scaler_ids(1000)
    assert len(pack_members(ids)) < 8 * len(ids)
    assert len(pack_members([f"node-{i:03d}" for i in range(1000)])) < 5 * 1000


def test_malformed_lists_decode_to_nothing() -> None:
    for text in ["", "Zabc", "0a.", "0a.9b", "!x"]:
        assert not unpack_members(text)


def test_a_thousand_members_fit_one_launch_within_ec2_tag_limits() -> None:
    ids = _scaler_ids(1000)
    other_tags = 6  # ownership, labels, the batch tag
    (chunk,) = chunk_members(ids, limit=1000, capacity=member_capacity(other_tags))
    tags = member_tags(chunk)
    assert len(tags) + other_tags <= MAX_TAGS
    assert all(len(t["Value"]) <= TAG_VALUE_LIMIT for t in tags)
    as_dict = {t["Key"]: t["Value"] for t in tags}
    assert members_of(as_dict) == ids
    assert [request_of(as_dict, i) for i in range(len(ids))] == ids
    assert request_of(as_dict, len(ids)) is None


def test_chunks_respect_the_count_and_the_tag_space_left() -> None:
    ids = _scaler_ids(1000)
    assert [len(c) for c in chunk_members(ids, limit=400, capacity=10**6)] == [400, 400, 200]
    # Few free tags: every chunk's packed list fits what is left, none is empty.
    capacity = member_capacity(MAX_TAGS - 2)
    chunks = chunk_members(ids, limit=1000, capacity=capacity)
    assert [rid for chunk in chunks for rid in chunk] == ids
    assert all(len(pack_members(chunk)) <= capacity for chunk in chunks)
    assert len(chunks) > 1
    # No room at all: every request is launched alone (tagged by request instead).
    assert chunk_members(ids[:3], limit=1000, capacity=0) == [[rid] for rid in ids[:3]]


def test_the_request_tag_wins_and_legacy_member_keys_still_count() -> None:
    assert request_of({REQUEST_KEY: "solo", "talprov-members-00": "0a.0b"}, 1) == "solo"
    legacy = {"talprov-member-w-1": "", "talprov-member-w-0": ""}
    assert request_of(legacy, 0) == "w-0"
    assert request_of(legacy, 1) == "w-1"


def test_a_listing_unpacks_each_member_list_once() -> None:
    # Every instance of a call carries the call's whole list: unpacking it per
    # instance made mapping a 1,000-instance call cost a million entries.
    ids = sorted(f"prod-workers-{i:05d}" for i in range(1000))
    tags = {t["Key"]: t["Value"] for t in member_tags(ids)}
    unpacked: list[str] = []

    def counted(text: str) -> list[str] | None:
        unpacked.append(text)
        return unpack_members(text)

    with patch("talprov.aws.members.unpack_members", side_effect=counted):
        found = [request_of(tags, index) for index in range(len(ids))]
    assert found == ids
    assert len(unpacked) <= 1
