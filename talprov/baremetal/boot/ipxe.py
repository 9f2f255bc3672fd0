"""What a machine boots: boot plans (built by the provider) and iPXE scripts (by the server).

A plan is built when a request takes a machine and stored in the inventory; the
boot server turns it into an iPXE script each time the machine asks, adding a
fresh single-use token to the config URL. Pure functions, no I/O.
"""

from __future__ import annotations

from urllib.parse import quote

from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.inventory import BootPlan
from talprov.providers.types import Arch, MachineRequest
from talprov.talos.cmdline import factory_cmdline
from talprov.talos.schematic import schematic_kernel_args

WIPE_ARG = "talos.experimental.wipe=system"
#: Where a wipe image may report that it is done (Talos ignores unknown arguments).
WIPE_REPORT_ARG = "talprov.wipe_report"
INITRD_NAME = "initramfs.xz"


def asset_urls(
    config: BareMetalConfig, factory_url: str, schematic_id: str, version: str, arch: str,
) -> tuple[str, str]:
    """Kernel and initramfs URLs: through the boot server (mirror or proxy) or the factory."""
    names = (f"kernel-{arch}", f"initramfs-{arch}.xz")
    if config.mirror_dir or config.proxy_factory:
        base = f"{config.boot_url.rstrip('/')}/assets/{schematic_id}/{version}"
    else:
        base = f"{factory_url.rstrip('/')}/image/{schematic_id}/{version}"
    return f"{base}/{names[0]}", f"{base}/{names[1]}"


def install_plan(
    config: BareMetalConfig, request: MachineRequest, kernel_url: str, initramfs_url: str,
) -> BootPlan:
    """The plan that installs Talos for ``request`` (its config fetched once by URL).

    The command line is the one the Image Factory's PXE script carries for the
    request's version, arch, META values and kernel args (talprov's console and
    extra arguments merged like kernel args). META key 0x0a (the metal network
    config) is read only this way on metal, so losing it would lose the network.
    The command line may contain the Omni join token (kernel-args mode) and
    META: the plan is a secret like the config itself. Raises ``InvalidRequest``
    for a META value the command line cannot carry.
    """
    # The schematic's kernel args: the request's and, in kernel-args mode, the Omni
    # join's, sorted as Omni sorts them (the same args the image itself carries).
    extra = [*config.console_args, *config.extra_kernel_args, *schematic_kernel_args(request)]
    args = factory_cmdline(request.talos_version, request.arch,
                           meta_values=request.meta_values, extra_args=extra)
    return BootPlan(kernel_url, initramfs_url, tuple(args), with_config=True)


def wipe_plan(
    config: BareMetalConfig, kernel_url: str, initramfs_url: str, version: str, arch: Arch,
) -> BootPlan:
    """The plan that boots Talos ``version`` only to wipe the system disk (no config)."""
    args = factory_cmdline(
        version, arch, extra_args=[*config.console_args, *config.extra_kernel_args, WIPE_ARG])
    return BootPlan(kernel_url, initramfs_url, tuple(args), with_config=False)


def _asset_with_uuid(url: str, boot_url: str, uuid: str) -> str:
    # Assets served by the boot server carry the UUID so it can tell who fetched them.
    if url.startswith(boot_url.rstrip("/") + "/"):
        return f"{url}?uuid={quote(uuid)}"
    return url


def boot_script(plan: BootPlan, boot_url: str, uuid: str, token: str | None,
                config_base: str | None = None) -> str:
    """The iPXE script that boots ``plan``; ``token`` goes into the config URL, on
    ``config_base`` (the HTTPS endpoint) when given, else on ``boot_url``."""
    args: list[str] = [f"initrd={INITRD_NAME}", *plan.cmdline]
    if plan.with_config and token is not None:
        args.append(f"talos.config={config_url(config_base or boot_url, uuid, token)}")
    elif token is not None:
        args.append(f"{WIPE_REPORT_ARG}={boot_url.rstrip('/')}/wiped/{quote(uuid)}/{quote(token)}")
    kernel = _asset_with_uuid(plan.kernel_url, boot_url, uuid)
    initrd = _asset_with_uuid(plan.initramfs_url, boot_url, uuid)
    return "\n".join([
        "#!ipxe",
        f"kernel {kernel} {' '.join(args)}",
        f"initrd --name {INITRD_NAME} {initrd}",
        "boot",
        "",
    ])


def config_url(boot_url: str, uuid: str, token: str) -> str:
    return f"{boot_url.rstrip('/')}/config/{quote(uuid)}/{quote(token)}"


def chain_script(boot_url: str) -> str:
    """The script DHCP points iPXE at: it asks again with the machine's UUID and MAC."""
    return f"#!ipxe\nchain {boot_url.rstrip('/')}/boot.ipxe?uuid=${{uuid}}&mac=${{net0/mac}}\n"


def local_disk_script(reason: str) -> str:
    """Boot from the next device (the installed disk); ``reason`` is shown on the console."""
    return f"#!ipxe\necho talprov: {_printable(reason)}\nexit\n"


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c in " -_.:")[:120]
