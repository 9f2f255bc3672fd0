"""talprov's pytest plugin, run the way a user's suite runs it: a separate test project
under pytester, in its own pytest process, using only the documented fixtures."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.emulators.vcsim.fixture import vcsim_binary

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


MORE_TESTS = '''
    import boto3
    import botocore.config
    import botocore.exceptions
    import httpx
    import pytest
    from test_user_example import request_file

    def test_leaves_an_instance(talprov_aws, talprov_cli, tmp_path):
        talprov_cli("machine", "create", "-f",
                    request_file(tmp_path, "left", "aws", talprov_aws.provider_data()),
                    "--wait", "--timeout", "120")
        assert len(talprov_aws.instances()) == 1

    def test_next_test_starts_clean(talprov_aws, talprov_store):
        assert talprov_aws.instances() == []
        assert talprov_store.list_requests() == []

    def test_refused_run_instances_is_retried(talprov_aws, talprov_faults, talprov_cli,
                                              tmp_path):
        fault = talprov_faults.fail("aws", "RunInstances", times=2)
        talprov_cli("machine", "create", "-f",
                    request_file(tmp_path, "refused", "aws", talprov_aws.provider_data()),
                    "--wait", "--timeout", "120")
        assert fault.injected == 2
        assert talprov_faults.pending("aws") == []
        assert len(talprov_aws.instances()) == 1

    def test_lost_run_instances_answer_makes_one_instance(
            talprov_aws, talprov_faults, talprov_cli, tmp_path):
        fault = talprov_faults.fail("aws", "RunInstances", after=True)
        talprov_cli("machine", "create", "-f",
                    request_file(tmp_path, "lost", "aws", talprov_aws.provider_data()),
                    "--wait", "--timeout", "120")
        assert fault.injected == 1
        assert len(talprov_aws.instances()) == 1

    def test_fault_before_leaves_the_cloud_untouched(talprov_aws, talprov_faults):
        talprov_faults.fail("aws", "CreateTags", status=503, code="Unavailable")
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=talprov_aws.url,
                           config=botocore.config.Config(retries={"total_max_attempts": 1}))
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        with pytest.raises(botocore.exceptions.ClientError, match="Unavailable"):
            ec2.create_tags(Resources=[vpc], Tags=[{"Key": "seen", "Value": "no"}])
        assert ec2.describe_tags(Filters=[{"Name": "key", "Values": ["seen"]}])["Tags"] == []

    def test_fault_after_acts_then_errs(talprov_aws, talprov_faults):
        talprov_faults.fail("aws", "CreateTags", after=True, status=503, code="Unavailable")
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=talprov_aws.url,
                           config=botocore.config.Config(retries={"total_max_attempts": 1}))
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        with pytest.raises(botocore.exceptions.ClientError, match="Unavailable"):
            ec2.create_tags(Resources=[vpc], Tags=[{"Key": "seen", "Value": "yes"}])
        assert len(ec2.describe_tags(Filters=[{"Name": "key", "Values": ["seen"]}])["Tags"]) == 1

    def test_proxmox_faults_before_and_after(talprov_proxmox, talprov_faults):
        from proxmoxer import ProxmoxAPI
        from proxmoxer.core import ResourceException

        server = talprov_proxmox.server
        api = ProxmoxAPI(server.host, port=server.port, user=server.user,
                         password=server.password, verify_ssl=str(server.ca_file))
        talprov_faults.fail("proxmox", "POST /nodes/pve1/qemu", status=500)
        with pytest.raises(ResourceException):
            api.nodes("pve1").qemu.post(vmid=150, name="refused")
        assert talprov_proxmox.vms() == []
        talprov_faults.fail("proxmox", "POST /nodes/pve1/qemu", after=True, status=500)
        with pytest.raises(ResourceException):
            api.nodes("pve1").qemu.post(vmid=151, name="lost")
        assert [vm["name"] for vm in talprov_proxmox.vms()] == ["lost"]
        assert talprov_faults.pending("proxmox") == []

    def test_leaves_a_vm(talprov_proxmox):
        talprov_proxmox.server.control("add_vm", vmid=300, name="left")
        assert len(talprov_proxmox.vms()) == 1

    def test_next_test_has_no_vm_and_still_the_iso(talprov_proxmox):
        assert talprov_proxmox.vms() == []
        files = talprov_proxmox.server.control("storages")["local"]["files"]
        assert talprov_proxmox.iso_volume.split("/", 1)[1] in files

    def test_unknown_platform_is_refused(talprov_faults):
        with pytest.raises(ValueError, match="supports aws, proxmox"):
            talprov_faults.fail("vmware", "CloneVM_Task")

    def test_service_serves_the_api_with_its_token(talprov_aws, talprov_service):
        url = talprov_service.url + "/v1/machine-requests"
        created = httpx.post(url, headers=talprov_service.headers,
                             json={"id": "api-1", "provider": "aws", "talos_version": "v1.11.5",
                                   "provider_data": talprov_aws.provider_data()})
        assert created.status_code == 201, created.text
        assert httpx.get(url).status_code == 401
        listed = httpx.get(url, headers=talprov_service.headers).json()
        assert [r["id"] for r in listed["items"]] == ["api-1"]
        assert talprov_service.token not in talprov_service.output()

    def test_machine_on_vsphere(talprov_vmware, talprov_cli, tmp_path):
        before = talprov_vmware.vm_names()
        talprov_cli("machine", "create", "-f",
                    request_file(tmp_path, "vs-1", "vmware", talprov_vmware.provider_data()),
                    "--wait", "--timeout", "120")
        assert len(talprov_vmware.vm_names() - before) == 1
        talprov_cli("machine", "delete", "vs-1", "--wait", "--timeout", "120")
        assert talprov_vmware.vm_names() == before

    def test_machine_on_openstack(talprov_openstack, talprov_cli, tmp_path):
        talprov_cli("machine", "create", "-f",
                    request_file(tmp_path, "os-1", "openstack",
                                 talprov_openstack.provider_data()),
                    "--wait", "--timeout", "120")
        [server] = talprov_openstack.cloud.servers()
        assert server.status == "ACTIVE"
        assert talprov_openstack.factory.hits
        talprov_cli("machine", "delete", "os-1", "--wait", "--timeout", "120")
        assert talprov_openstack.cloud.servers() == []

    def test_clock_is_fake(talprov_clock):
        before = talprov_clock()
        talprov_clock.sleep(3600)
        assert talprov_clock() == before + 3600
'''


def test_user_project_with_the_documented_fixtures(pytester: pytest.Pytester) -> None:
    """The documented example (a machine provisioned and deleted on moto and on
    fakepve), machines on vcsim and the OpenStack fake, resets between tests,
    faults before and after, the service and the clock: one user project, one
    pytest process, as a user's suite runs them."""
    pytester.makepyfile(test_user_example=documented_example(), test_more=MORE_TESTS)
    result = run(pytester, "-v", "-p", "no:randomly", "-W", "ignore::DeprecationWarning",
                 f"--talprov-vcsim={vcsim_binary()}", "test_user_example.py", "test_more.py")
    result.stdout.fnmatch_lines([
        "*test_user_example.py::test_machine_on_ec2 PASSED*",
        "*test_user_example.py::test_machine_on_proxmox_survives_a_lost_answer PASSED*"])
    result.assert_outcomes(passed=16)


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


def test_a_vcsim_path_that_is_no_file_is_named(tmp_path: Path) -> None:
    from talprov.pytest_plugin.platforms import find_vcsim

    with pytest.raises(ValueError, match=r"vcsim binary .*nope is not a file.*build\.sh"):
        find_vcsim(str(tmp_path / "nope"))
    binary = tmp_path / "vcsim"
    binary.write_text("")
    assert find_vcsim(str(binary)) == binary


def test_importing_the_plugin_is_cheap() -> None:
    """What every pytest run of an installed talprov pays: no cloud SDK, no store."""
    code = ("import sys, talprov.pytest_plugin; "
            "print(sorted(m for m in ('boto3','moto','sqlalchemy','pydantic','fastapi',"
            "'talprov.store','talprov.cli') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout
    assert shown.strip() == "[]"


def test_store_on_postgresql_is_emptied_between_tests(pytester: pytest.Pytester,
                                                       postgres_url: str) -> None:
    pytester.makepyfile(test_user_example=documented_example(), test_pg='''
        from test_user_example import request_file

        def test_records(talprov_aws, talprov_cli, talprov_store, tmp_path):
            assert talprov_store.url.startswith("postgresql")
            talprov_cli("machine", "create", "-f",
                        request_file(tmp_path, "pg-1", "aws", talprov_aws.provider_data()))
            assert [r.request.id for r in talprov_store.list_requests()] == ["pg-1"]

        def test_starts_empty(talprov_store):
            assert talprov_store.list_requests() == []
    ''')
    run(pytester, "-p", "no:randomly", f"--talprov-store-url={postgres_url}",
        "test_pg.py").assert_outcomes(passed=2)
