"""Talos's own strategic-merge cases (configpatcher apply_test.go) run through apply_patches.

The inputs, patches and expected outputs are Talos's testdata
(tests/unit/talos/data/configpatcher, see the NOTICE there). Talos renders its output
from Go structs, so the expected files spell out zero values (``token: ""``,
``certSANs: []``, ``cluster: null``) that mean the same as an absent field to its
decoder; both sides are compared with empty values pruned. The cases of TestApply
and TestApplyMultiDocFail also use RFC 6902 JSON patches, which talprov does not
offer, and are not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from talprov.errors import ConfigError
from talprov.talos.configschema import check_config
from talprov.talos.machineconfig import apply_patches, load_documents

DATA = Path(__file__).parent / "data" / "configpatcher"


def pruned(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {k: pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


# (Talos test, config, patches in order, expected)
CASES = [
    ("TestApplyWithManifestNewline", "apply/config.yaml", ["apply/strategic4.yaml"],
     "apply/expected_manifests.yaml"),
    ("TestApplyMultiDoc", "multidoc/config.yaml",
     ["multidoc/strategic1.yaml", "multidoc/strategic2.yaml"], "multidoc/expected.yaml"),
    ("TestApplyAuditPolicy", "auditpolicy/config.yaml", ["auditpolicy/patch1.yaml"],
     "auditpolicy/expected.yaml"),
    ("TestApplyMultiDocDelete", "patchdelete/config.yaml", ["patchdelete/strategic1.yaml"],
     "patchdelete/expected.yaml"),
    ("TestApplyMultiDocCPDelete", "patchdelete/controlplane_orig.yaml",
     ["patchdelete/strategic2.yaml", "patchdelete/strategic3.yaml",
      "patchdelete/strategic4.yaml"], "patchdelete/controlplane_expected.yaml"),
    ("TestPatchLink", "patchlink/base.yaml", ["patchlink/patch.yaml"],
     "patchlink/expected.yaml"),
]


@pytest.mark.parametrize(("case", "config", "patches", "expected"), CASES,
                         ids=[case[0] for case in CASES])
def test_talos_configpatcher_case(case: str, config: str, patches: list[str],
                                  expected: str) -> None:
    out = apply_patches((DATA / config).read_text(),
                        [(DATA / p).read_text() for p in patches], case)
    got = load_documents(out, "got")
    want = load_documents((DATA / expected).read_text(), "expected")
    assert pruned(got) == pruned(want)
    # Talos's own patch testdata leaves machine.type out: the config checks accept that.
    check_config(got, case, "v1.13.9")


def test_manifest_contents_lose_their_leading_newline_as_talos_decodes_them() -> None:
    out = apply_patches((DATA / "apply/config.yaml").read_text(),
                        [(DATA / "apply/strategic4.yaml").read_text()], "c")
    (manifest,) = load_documents(out, "got")[0]["cluster"]["inlineManifests"]
    assert manifest["contents"].startswith("---\napiVersion: v1\n")


def test_deleting_below_a_missing_field_fails_as_in_talos() -> None:
    # TestPatchDeleteMissing: "path 'machine.network.hostname' ... lookup failed".
    with pytest.raises(ConfigError) as caught:
        apply_patches((DATA / "patchdeletemissing/config.yaml").read_text(),
                      [(DATA / "patchdeletemissing/strategic1.yaml").read_text()], "c")
    assert caught.value.where == "c: patch 1: machine.network.hostname"
