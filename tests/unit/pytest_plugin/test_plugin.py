"""talprov's pytest plugin, run the way a user's suite runs it: a separate test project
under pytester, in its own pytest process, using only the documented fixtures."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[3]
PLUGIN = "talprov.pytest_plugin"


def plugin_args() -> list[str]:
    """``-p talprov.pytest_plugin`` unless the installed entry point loads it already
    (an install from before the entry point existed, such as an old editable one)."""
    installed = any(ep.value == PLUGIN for ep in metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", PLUGIN]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", *args,
                                         timeout=240)


def documented_example() -> str:
    """The complete example of docs/testing.md (the block marked ``user-example``)."""
    text = (REPO / "docs" / "testing.md").read_text()
    found = re.search(r"```python user-example\n(.*?)```", text, re.S)
    assert found is not None, "docs/testing.md lost its user-example block"
    return found.group(1)


def test_pyproject_registers_the_plugin_and_the_extra() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"talprov": PLUGIN}
    testing = project["optional-dependencies"]["testing"]
    for needed in ("moto[server", "fakepve", "pytest"):
        assert any(d.startswith(needed) for d in testing), needed
    [own] = [d for d in testing if d.startswith("talprov[")]
    extras = set(own.removeprefix("talprov[").removesuffix("]").split(","))
    assert {"aws", "proxmox", "vmware", "openstack", "service"} <= extras


def test_documented_example_provisions_and_deletes_on_moto_and_fakepve(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_example=documented_example())
    result = run(pytester, "-v")
    result.assert_outcomes(passed=2)


def test_emulators_are_reset_between_tests_and_faults_before_and_after(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_reset='''
        import yaml
        from test_user_example import request_file

        def test_leaves_an_instance(talprov_aws, talprov_cli, tmp_path):
            talprov_cli("machine", "create", "-f",
                        request_file(tmp_path, "left", "aws", talprov_aws.provider_data()),
                        "--wait", "--timeout", "120")
            assert len(talprov_aws.instances()) == 1

        def test_next_test_starts_clean(talprov_aws, talprov_store):
            assert talprov_aws.instances() == []
            assert talprov_store.list_requests() == []

        def test_lost_run_instances_answer_makes_one_instance(
                talprov_aws, talprov_faults, talprov_cli, tmp_path):
            fault = talprov_faults.fail("aws", "RunInstances", after=True, times=2)
            talprov_cli("machine", "create", "-f",
                        request_file(tmp_path, "lost", "aws", talprov_aws.provider_data()),
                        "--wait", "--timeout", "120")
            assert fault.injected == 2
            assert len(talprov_aws.instances()) == 1

        def test_refused_call_creates_nothing(talprov_aws, talprov_faults):
            import botocore.exceptions, pytest
            talprov_faults.fail("aws", "DescribeImages", status=503, code="Unavailable")
            ec2 = __import__("boto3").client("ec2", region_name="us-east-1",
                                             endpoint_url=talprov_aws.url)
            with pytest.raises(botocore.exceptions.ClientError, match="Unavailable"):
                ec2.describe_images(Owners=["540036508848"])
            assert ec2.describe_images(Owners=["540036508848"])["Images"]

        def test_unknown_platform_is_refused(talprov_faults):
            import pytest
            with pytest.raises(ValueError, match="supports aws, proxmox"):
                talprov_faults.fail("vmware", "CloneVM_Task")
    ''')
    pytester.makepyfile(test_user_example=documented_example())
    result = run(pytester, "-v", "-p", "no:randomly", "test_reset.py")
    result.assert_outcomes(passed=5)


def test_loading_the_plugin_starts_nothing_and_imports_no_cloud_library(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_idle='''
        import os, sys

        def children():
            me = str(os.getpid())
            found = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/stat") as stat:
                        if stat.read().rsplit(")", 1)[1].split()[1] == me:
                            found.append(pid)
                except OSError:
                    pass
            return found

        def test_nothing_running_or_imported(pytestconfig):
            assert pytestconfig.pluginmanager.hasplugin("talprov.pytest_plugin") or \\
                pytestconfig.pluginmanager.hasplugin("talprov")
            assert children() == []
            heavy = {"boto3", "moto", "proxmoxer", "pyVmomi", "openstack", "fastapi",
                     "sqlalchemy", "talprov.cli", "talprov.store"}
            assert heavy.isdisjoint(sys.modules), heavy & set(sys.modules)
    ''')
    run(pytester, "-p", "no:fakepve").assert_outcomes(passed=1)


def test_missing_vcsim_fails_with_how_to_get_it_or_skips_when_asked(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TALPROV_VCSIM", raising=False)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no vcsim on it
    pytester.makepyfile(test_vmware='''
        def test_vm(talprov_vmware):
            pass
    ''')
    failed = run(pytester)
    failed.assert_outcomes(errors=1)
    failed.stdout.fnmatch_lines(["*no vcsim binary*build.sh*--talprov-vcsim=PATH*"])
    skipped = run(pytester, "--talprov-skip-missing", "-rs")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(["*SKIPPED*no vcsim binary*"])
    named = run(pytester, "--talprov-vcsim", str(pytester.path / "nope"))
    named.assert_outcomes(errors=1)
    named.stdout.fnmatch_lines(["*vcsim binary*nope is not a file*"])


def test_talprov_service_serves_the_api_with_its_token(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_service='''
        import httpx

        def test_api(talprov_aws, talprov_service):
            created = httpx.post(
                talprov_service.url + "/v1/machine-requests", headers=talprov_service.headers,
                json={"id": "api-1", "provider": "aws", "talos_version": "v1.11.5",
                      "provider_data": talprov_aws.provider_data()})
            assert created.status_code == 201, created.text
            refused = httpx.get(talprov_service.url + "/v1/machine-requests")
            assert refused.status_code == 401
            listed = httpx.get(talprov_service.url + "/v1/machine-requests",
                               headers=talprov_service.headers).json()
            assert [r["id"] for r in listed["items"]] == ["api-1"]
            assert talprov_service.token not in talprov_service.output()
    ''')
    run(pytester).assert_outcomes(passed=1)


def test_importing_the_plugin_is_cheap() -> None:
    """What every pytest run of an installed talprov pays: no cloud SDK, no store."""
    code = ("import sys, talprov.pytest_plugin; "
            "print(sorted(m for m in ('boto3','moto','sqlalchemy','pydantic','fastapi',"
            "'talprov.store','talprov.cli') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout
    assert shown.strip() == "[]"
