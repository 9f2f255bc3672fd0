"""Bare-metal install plans boot with the command line the Image Factory serves.

Before, the plan used one fixed argument list (IMA arguments on every version, no
``selinux=1``, no ``module.sig_enforce=1``/``proc_mem.force_override=never``) and dropped
the request's META values, so a machine lost META key 0x0a (its metal network config).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from talprov.baremetal.boot.ipxe import boot_script, install_plan, wipe_plan
from talprov.baremetal.config import BareMetalConfig
from talprov.providers.types import MachineRequest

NETWORK = '{"addresses":[{"address":"10.0.0.5/24","linkName":"eth0"}]}'
META_ARG = "talos.environment=INSTALLER_META_BASE64=" + base64.b64encode(
    f"0xa={NETWORK}".encode()).decode()
URLS = ("http://f.test/image/x/v1.13.9/kernel-amd64", "http://f.test/image/x/v1.13.9/initramfs-amd64.xz")


def config(tmp_path: Path, **extra: object) -> BareMetalConfig:
    return BareMetalConfig.model_validate({
        "inventory": str(tmp_path / "inv.sqlite"), "boot_url": "http://127.0.0.1:1",
        "console_args": [], **extra})


def request(version: str) -> MachineRequest:
    return MachineRequest.model_validate({
        "id": "m1", "provider": "bm", "talos_version": version, "kernel_args": ["net.ifnames=0"],
        "meta_values": [{"key": 10, "value": NETWORK}]})


@pytest.mark.parametrize(("version", "defaults"), [
    ("v1.10.9", "ima_template=ima-ng ima_appraise=fix ima_hash=sha512 selinux=1"),
    ("v1.11.5", "selinux=1"),
    ("v1.12.11", "selinux=1 module.sig_enforce=1"),
    ("v1.13.9", "selinux=1 module.sig_enforce=1 proc_mem.force_override=never"),
])
def test_install_plan_is_the_factory_cmdline_with_meta(
        tmp_path: Path, version: str, defaults: str) -> None:
    plan = install_plan(config(tmp_path), request(version), *URLS)
    assert " ".join(plan.cmdline) == (
        "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
        f"nvme_core.io_timeout=4294967295 printk.devkmsg=on {defaults} {META_ARG} net.ifnames=0")
    script = boot_script(plan, "http://127.0.0.1:1", "u-1", "tok")
    assert META_ARG in script


def test_talprovs_console_args_replace_the_factory_console(tmp_path: Path) -> None:
    cfg = config(tmp_path, console_args=["console=tty0", "console=ttyS0,115200n8"])
    plan = install_plan(cfg, request("v1.13.9"), *URLS)
    assert plan.cmdline[:3] == ("talos.platform=metal", "console=tty0", "console=ttyS0,115200n8")
    wipe = wipe_plan(cfg, *URLS, "v1.13.9", request("v1.13.9").arch)
    assert wipe.cmdline[-1] == "talos.experimental.wipe=system"
    assert "proc_mem.force_override=never" in wipe.cmdline
