"""A machine-config patch that Talos's schema refuses is reported in the patch file,
with the path inside it (issue 14: errors name the file to fix).

Before: the problem of the patched config was reported at the base config
(`worker.yaml: document 1 (v1alpha1): machine.install.wipe`), a file that is fine.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import WORKER_CONFIG, Home
from tests.unit.test_cli import assert_usage_error

BAD_WIPE = "machine:\n  install:\n    wipe: {sometimes: true}\n"
UNKNOWN_FIELD = "machine:\n  kubelet:\n    extraArgz: {}\n"
GOOD = "machine:\n  install:\n    wipe: true\n"


def _write(root: Path, name: str, text: str) -> str:
    (root / name).write_text(text)
    return name


def test_a_request_file_patch_is_blamed_by_name_and_path(home: Home) -> None:
    sub = home.root / "sub"
    sub.mkdir()
    _write(sub, "good.yaml", GOOD)
    _write(sub, "bad.yaml", BAD_WIPE)
    request = home.write_request("p-1", config={"file": "worker.yaml",
                                                "patches": ["sub/good.yaml", "sub/bad.yaml"]})
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output,
                       f"{sub / 'bad.yaml'}: document 1 (v1alpha1): machine.install.wipe",
                       "must be of type boolean")
    assert "worker.yaml" not in result.output


def test_the_first_patch_is_blamed_when_a_later_one_leaves_its_problem(home: Home) -> None:
    _write(home.root, "unknown.yaml", UNKNOWN_FIELD)
    _write(home.root, "good.yaml", GOOD)
    request = home.write_request("p-2", config={"file": "worker.yaml",
                                                "patches": ["unknown.yaml", "good.yaml"]})
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output,
                       f"{home.root / 'unknown.yaml'}: document 1 (v1alpha1): "
                       "machine.kubelet.extraArgz", "is not a field Talos")


def test_a_problem_of_the_base_stays_with_the_base(home: Home) -> None:
    (home.root / "worker.yaml").write_text(WORKER_CONFIG + UNKNOWN_FIELD.replace(
        "machine:\n", "debug: false\nmachine_:\n"))
    _write(home.root, "good.yaml", GOOD)
    request = home.write_request("p-3", config={"file": "worker.yaml",
                                                "patches": ["good.yaml"]})
    result = home.invoke("machine", "create", "-f", str(request))
    assert_usage_error(result.exit_code, result.output, "worker.yaml: document 1 (v1alpha1)")
    assert "good.yaml" not in result.output


def test_a_cluster_spec_patch_is_blamed_by_name_and_path(home: Home) -> None:
    _write(home.root, "bad.yaml", BAD_WIPE)
    spec = home.write_spec(patches=[{"inline": GOOD}, {"file": "bad.yaml"}])
    result = home.invoke("plan", "-f", str(spec))
    assert_usage_error(result.exit_code, result.output,
                       '(Workers "w"): patches[1] (bad.yaml): document 1 (v1alpha1): '
                       "machine.install.wipe", "must be of type boolean")
