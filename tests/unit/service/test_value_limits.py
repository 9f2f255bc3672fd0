"""Values at the API's limits (on a PostgreSQL store) and odd Unicode: 422, never a 5xx."""

from __future__ import annotations

import json
import random
from typing import Any

from tests.helpers import Home
from tests.unit.service.conftest import WRITE, Api, open_api, request_body


def _wide_text(length: int, seed: int) -> str:
    # Four-byte UTF-8 characters in random order: they do not compress, the worst
    # case for a b-tree index entry.
    rng = random.Random(seed)
    return "".join(chr(rng.randrange(0x1F300, 0x1F5FF)) for _ in range(length))


def _post_raw(api: Api, url: str, text: str) -> Any:
    """POST JSON text as is (json= cannot carry a lone surrogate escape)."""
    return api.request("POST", url, headers={**WRITE, "Content-Type": "application/json"},
                       content=text.encode())


def test_label_values_are_bounded_so_that_the_index_takes_them(
    home: Home, postgres_url: str
) -> None:
    home.write_config(store=postgres_url)
    for api in open_api(home, workers=False):
        too_wide = api.request("POST", "/v1/machine-requests", headers=WRITE,
                               json=request_body("lim-1", labels={"k": _wide_text(1024, 1)}))
        assert too_wide.status_code == 422, too_wide.text
        assert too_wide.json()["detail"][0]["loc"] == ["body", "labels", "k"]
        # The widest value Kubernetes' label rule takes: 63 characters (it was 1024
        # UTF-8 bytes, bounded for PostgreSQL's b-tree entry, before talprov took
        # Kubernetes' rule; 63 ASCII characters fit that index with room to spare).
        widest = ("Ab9-_." * 11)[:62] + "z"
        created = api.request("POST", "/v1/machine-requests", headers=WRITE,
                              json=request_body("lim-1", labels={"k": widest}))
        assert created.status_code == 201, created.text
        found = api.request("GET", "/v1/machine-requests", headers=WRITE,
                            params={"label": f"k={widest}"})
        assert [i["id"] for i in found.json()["items"]] == ["lim-1"]
        as_set = api.request("POST", "/v1/machine-request-sets", headers=WRITE, json={
            "name": "lim", "machine_count": 1, "provider": "fake", "talos_version": "v1.13.9",
            "labels": {"k": _wide_text(1024, 3)}})
        assert as_set.status_code == 422, as_set.text


def test_lone_surrogates_are_422_naming_the_field(idle_api: Api) -> None:
    """JSON may escape an unpaired surrogate; it has no UTF-8 form, so no store,
    SDK or Image Factory could take it later: refused up front, naming the field."""
    base = json.dumps(request_body("sur-1"))[:-1]
    cases: list[tuple[str, list[str | int]]] = [
        ('"labels": {"k": "\\ud800"}', ["body", "labels", "k"]),
        ('"extensions": ["ok", "x\\udfff"]', ["body", "extensions", 1]),
        ('"kernel_args": ["\\udc00"]', ["body", "kernel_args", 0]),
        ('"meta_values": [{"key": 10, "value": "\\ud800"}]', ["body", "meta_values", 0, "value"]),
        ('"provider_data": {"zone": "\\ud83d"}', ["body", "provider_data", "zone"]),
        ('"config": "version: v1alpha1\\n# \\ud800\\n"', ["body", "config"]),
        ('"join": {"api_url": "https://omni.example/?jointoken=\\ud800"}',
         ["body", "join", "api_url"]),
        # Valid JSON text, but a YAML escape in the config makes a lone surrogate.
        (r'"config": "version: v1alpha1\nmachine: {type: worker, nodeLabels: {a: \"\\ud800\"}}"',
         ["body", "config"]),
    ]
    for extra, loc in cases:
        response = _post_raw(idle_api, "/v1/machine-requests", f"{base}, {extra}}}")
        assert response.status_code == 422, (extra, response.text)
        assert response.json()["detail"][0]["loc"] == loc, (extra, response.text)
        if loc[1] != "labels":  # the label rule answers first (its characters)
            assert "unpaired surrogate" in response.json()["detail"][0]["msg"], response.text
    assert idle_api.request("GET", "/v1/machine-requests/sur-1",
                            headers=WRITE).status_code == 404
    idle_api.request("POST", "/v1/machine-requests", headers=WRITE, json=request_body("sur-2"))
    forget = _post_raw(idle_api, "/v1/machine-requests/sur-2/forget", '{"reason": "\\ud800"}')
    assert forget.status_code == 422, forget.text
