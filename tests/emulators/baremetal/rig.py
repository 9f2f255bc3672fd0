"""The bare-metal rig: ipmi_sim BMCs driving QEMU VMs that PXE-boot from our boot server.

Layout of one rig (everything torn down when the ``with`` block ends, also on
failure):

* a network namespace with a bridge ``br0`` (10.213.0.1/24), one tap per VM, an
  IPv6 RA sender (ends iPXE's RA wait) and ``talprov baremetal serve`` (HTTP,
  TFTP, DHCP in full mode with a range, since the namespace has no other DHCP);
* per machine, an ``ipmi_sim`` on 127.0.0.1 (host namespace) whose
  ``chassis_control`` program starts/stops the VM in the namespace;
* a mirror directory with a real kernel (from the cached Debian
  ``linux-image-*-amd64`` .deb) and a busybox initramfs whose init fetches
  ``talos.config=``, reports over HTTP and powers off.

Needs root and Debian packages: openipmi, qemu-system-x86, ipxe-qemu, ipxe,
busybox-static, cpio, iproute2; and the kernel .deb in ``TALPROV_RIG_CACHE``
(default /var/cache/talprov-rig). Nothing is downloaded here.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from talprov.baremetal.inventory import BmcInfo, Inventory
from talprov.processes import stop_process

HERE = Path(__file__).parent
CACHE = Path(os.environ.get("TALPROV_RIG_CACHE", "/var/cache/talprov-rig"))
BRIDGE = "br0"
SUBNET_PREFIX = "10.213.0"
SERVER_IP = f"{SUBNET_PREFIX}.1"
HTTP_PORT = 8081
BOOT_URL = f"http://{SERVER_IP}:{HTTP_PORT}"
BMC_USER = "admin"
TOOLS = ("ipmi_sim", "qemu-system-x86_64", "ip", "cpio")
FILES = ("/bin/busybox", "/usr/lib/ipxe/qemu/efi-e1000.rom", "/usr/lib/ipxe/undionly.kpxe")


class RigUnavailable(Exception):
    """What is missing for the rig (root, a package, the cached kernel)."""


def check_requirements() -> None:
    """Raise ``RigUnavailable`` naming what is missing."""
    if os.geteuid() != 0:
        raise RigUnavailable("the bare-metal rig needs root (namespaces, taps, port 67)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    missing += [f for f in FILES if not Path(f).exists()]
    if missing:
        raise RigUnavailable(f"missing: {', '.join(missing)} (see scripts/install-system-deps.sh)")
    if not _kernel_debs():
        raise RigUnavailable(
            f"no linux-image-*-amd64 .deb in {CACHE}: run `apt-get download $(apt-cache "
            "depends linux-image-amd64 | awk '/Depends: linux-image/{print $2}')` there")


def _kernel_debs() -> list[Path]:
    return sorted(p for p in CACHE.glob("linux-image-*-amd64_*.deb")
                  if not p.name.startswith("linux-image-amd64_"))


def kernel_files() -> tuple[Path, Path]:
    """``vmlinuz`` and ``e1000.ko`` extracted from the cached kernel .deb (once)."""
    deb = _kernel_debs()[-1]
    out = CACHE / "extracted" / deb.stem
    vmlinuz, e1000 = out / "vmlinuz", out / "e1000.ko"
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (vmlinuz.exists() and e1000.exists()):
            tree = out / "tree"
            tree.mkdir(exist_ok=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
            shutil.copy(next(tree.glob("boot/vmlinuz-*")), vmlinuz)
            shutil.copy(next(tree.glob("lib/modules/*/kernel/drivers/net/ethernet/intel/e1000/"
                                       "e1000.ko*")), e1000)
            shutil.rmtree(tree)
    return vmlinuz, e1000


def build_initramfs(dest: Path, e1000: Path) -> Path:
    """A gzip'd newc cpio: static busybox, the e1000 module, our init."""
    stage = dest.parent / "initramfs-root"
    for sub in ("bin", "lib", "proc", "sys", "dev", "tmp", "etc"):
        (stage / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", stage / "bin" / "busybox")
    shutil.copy(e1000, stage / "lib" / "e1000.ko")
    shutil.copy(HERE / "init.sh", stage / "init")
    shutil.copy(HERE / "udhcpc.script", stage / "bin" / "udhcpc.script")
    for name in ("init", "bin/udhcpc.script", "bin/busybox"):
        (stage / name).chmod(0o755)
    names = subprocess.run(["find", "."], cwd=stage, check=True, capture_output=True).stdout
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=stage, input=names,
                             check=True, capture_output=True).stdout
    dest.write_bytes(gzip.compress(archive, compresslevel=1))
    return dest


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 3
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


@dataclass
class VirtualMachine:
    """One VM and the ipmi_sim BMC that powers it."""

    name: str
    uuid: str
    mac: str
    tap: str
    vmdir: Path
    bmc_port: int = 0
    sim: subprocess.Popen[bytes] | None = None
    # A fresh password per BMC: pyghmi keeps sessions per (BMC, user, password) for
    # the whole process, and a later BMC may get the same port.
    password: str = field(default_factory=lambda: f"rig-{uuidlib.uuid4().hex[:12]}")

    def bmc_info(self) -> BmcInfo:
        return BmcInfo(kind="ipmi", address="127.0.0.1", port=self.bmc_port, username=BMC_USER,
                       password_ref=self.password)

    def qemu_pid(self) -> int | None:
        try:
            pid = int((self.vmdir / "qemu.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def powered(self) -> bool:
        return self.qemu_pid() is not None

    def serial(self) -> str:
        path = self.vmdir / "serial.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_serial(self, text: str, timeout: float = 15.0) -> bool:
        """Whether ``text`` shows up on the serial console within ``timeout`` seconds.

        The boot server may record a fetch before the slow (TCG) guest prints it.
        """
        deadline = time.monotonic() + timeout
        while text not in self.serial():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def chassis_log(self) -> list[str]:
        path = self.vmdir / "chassis.log"
        return path.read_text().splitlines() if path.exists() else []

    def go_silent(self) -> None:
        """From now on the BMC answers nothing (its chassis program hangs ipmi_sim)."""
        (self.vmdir / "silent").touch()

    def held_calls(self) -> list[str]:
        """The chassis calls a silent BMC holds (the first hangs ipmi_sim, and with it
        the IPMI request that asked for it), as its chassis log notes them."""
        return [line for line in self.chassis_log() if " held: " in line]

    def stop(self) -> None:
        (self.vmdir / "silent").unlink(missing_ok=True)
        pid = self.qemu_pid()
        if pid is not None:
            _kill(pid)
        stop_process(self.sim, timeout=3)


@dataclass
class Rig:
    """A running rig; see the module docstring. Use :func:`rig` to get one."""

    root: Path
    netns: str
    inventory_path: Path
    mirror: Path
    provider_block: dict[str, Any]
    vms: list[VirtualMachine] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def inventory(self) -> Inventory:
        return Inventory(self.inventory_path)

    def netns_run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv], check=check,
                              capture_output=True, timeout=30)

    def http_get(self, path: str) -> tuple[int, bytes]:
        """GET ``BOOT_URL + path`` from inside the namespace (as a machine would)."""
        code = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen({BOOT_URL + path!r}, timeout=10)\n"
            "    sys.stdout.write('%d\\n' % r.status); sys.stdout.flush()\n"
            "    sys.stdout.buffer.write(r.read())\n"
            "except urllib.error.HTTPError as e:\n"
            "    sys.stdout.write('%d\\n' % e.code)\n"
        )
        out = self.netns_run(sys.executable, "-c", code).stdout
        status, _, body = out.partition(b"\n")
        return int(status), body

    def add_vm(self, name: str, *, enrol: bool = True, mac: str | None = None,
               uuid: str | None = None) -> VirtualMachine:
        """A VM with its own BMC; enrolled in the inventory unless ``enrol`` is False."""
        index = len(self.vms)
        vm = VirtualMachine(
            name=name, uuid=uuid or str(uuidlib.uuid4()),
            mac=mac or f"52:54:00:21:3{index % 10}:{0x10 + index:02x}",
            tap=f"tap{index}", vmdir=self.root / "vms" / name)
        vm.vmdir.mkdir(parents=True)
        self.netns_run("ip", "tuntap", "add", "dev", vm.tap, "mode", "tap")
        self.netns_run("ip", "link", "set", vm.tap, "master", BRIDGE, "up")
        (vm.vmdir / "vm.json").write_text(json.dumps({
            "name": name, "uuid": vm.uuid, "mac": vm.mac, "tap": vm.tap, "netns": self.netns,
            "memory": 256}))
        self.vms.append(vm)
        start_bmc(vm)
        if enrol:
            self.inventory.add(name, uuid=vm.uuid, macs=[vm.mac], bmc=vm.bmc_info(),
                               labels={"rack": "r1"}, cpus=1, memory_mib=256, disk_gb=10)
        return vm

    def boot_log(self) -> str:
        path = self.root / "boot-server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def teardown(self) -> None:
        for vm in self.vms:
            vm.stop()
        for proc in reversed(self.procs):
            stop_process(proc)
        subprocess.run(["ip", "netns", "del", self.netns], check=False, capture_output=True)


def start_bmc(vm: VirtualMachine) -> None:
    """Start ``vm``'s ipmi_sim on 127.0.0.1 (fresh state dir) and wait until it listens."""
    vm.bmc_port = free_udp_port()
    control = f"/usr/bin/python3 {HERE / 'chassis_control.py'} {vm.vmdir}"
    (vm.vmdir / "lan.conf").write_text(
        f'name "{vm.name}"\n'
        "set_working_mc 0x20\n"
        "  startlan 1\n"
        f"    addr 127.0.0.1 {vm.bmc_port}\n"
        "    priv_limit admin\n"
        "    allowed_auths_callback none md2 md5 straight\n"
        "    allowed_auths_user none md2 md5 straight\n"
        "    allowed_auths_operator none md2 md5 straight\n"
        "    allowed_auths_admin none md2 md5 straight\n"
        f"    guid {uuidlib.UUID(vm.uuid).hex}\n"
        "  endlan\n"
        f'  chassis_control "{control}"\n'
        '  user 1 true  ""  ""  user 10 none md2 md5 straight\n'
        f'  user 2 true  "{BMC_USER}" "{vm.password}" admin 10 none md2 md5 straight\n')
    (vm.vmdir / "emu.cmd").write_text(
        "mc_setbmc 0x20\n"
        "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
        "mc_enable 0x20\n")
    state = vm.vmdir / "ipmi-state"
    state.mkdir()
    log = (vm.vmdir / "ipmi_sim.log").open("wb")
    vm.sim = subprocess.Popen(
        ["ipmi_sim", "-c", str(vm.vmdir / "lan.conf"), "-f", str(vm.vmdir / "emu.cmd"),
         "-s", str(state), "-n"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    _wait_udp_bound(vm.bmc_port, vm.sim)


def _wait_udp_bound(port: int, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    hexport = f":{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ipmi_sim exited with {proc.returncode}")
        if any(hexport in line.split()[1] for line in
               Path("/proc/net/udp").read_text().splitlines()[1:]):
            return
        time.sleep(0.02)
    raise RuntimeError(f"ipmi_sim did not bind UDP port {port}")


def _wait_for_line(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"boot server exited: {path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"boot server not ready: {path.read_text(errors='replace')[-2000:]}")


@contextmanager
def rig(root: Path, schematic_id: str, talos_version: str,
        **overrides: Any) -> Iterator[Rig]:
    """Start a rig under ``root`` serving ``schematic_id``/``talos_version`` from its mirror."""
    check_requirements()
    vmlinuz, e1000 = kernel_files()
    mirror = root / "mirror"
    assets = mirror / schematic_id / talos_version
    assets.mkdir(parents=True)
    os.symlink(vmlinuz, assets / "kernel-amd64")
    build_initramfs(assets / "initramfs-amd64.xz", e1000)
    netns = f"tpbm{os.getpid() % 100000}x{time.monotonic_ns() % 100000}"
    block: dict[str, Any] = {
        "type": "baremetal",
        "inventory": str(root / "inventory.sqlite"),
        "boot_url": BOOT_URL,
        "listen_address": "0.0.0.0",
        "listen_port": HTTP_PORT,
        "mirror_dir": str(mirror),
        "console_args": ["console=ttyS0,115200n8"],
        "extra_kernel_args": [f"rig.report={BOOT_URL}", "quiet", "panic=-1"],
        "tftp_port": 69,
        "dhcp": {"interface_address": SERVER_IP, "interface": BRIDGE,
                 "range_start": f"{SUBNET_PREFIX}.100", "range_end": f"{SUBNET_PREFIX}.199"},
        "bmc_min_interval": 0.1,
        "poll_interval": 0.5,
        "observe_interval": 2.0,
        "install_timeout": 120.0,
        "wipe_seconds": 120.0,
        "wipe_timeout": 120.0,
        **overrides,
    }
    the_rig = Rig(root=root, netns=netns, inventory_path=root / "inventory.sqlite",
                  mirror=mirror, provider_block=block)
    try:
        subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "link", "add", BRIDGE, "type", "bridge"],
                     ["ip", "addr", "add", f"{SERVER_IP}/24", "dev", BRIDGE],
                     ["ip", "-6", "addr", "add", "fe80::1/64", "dev", BRIDGE, "nodad"],
                     ["ip", "link", "set", BRIDGE, "up"]):
            the_rig.netns_run(*argv)
        config_file = root / "provider.yaml"
        config_file.write_text(yaml.safe_dump({k: v for k, v in block.items() if k != "type"}))
        Inventory(the_rig.inventory_path)
        ra_log = (root / "ra.log").open("wb")
        the_rig.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", netns, "/usr/bin/python3", str(HERE / "ra_sender.py"),
             BRIDGE], stdout=ra_log, stderr=ra_log))
        log_path = root / "boot-server.log"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}
        server = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "talprov.cli.baremetal",
             "--file", str(config_file), "serve", "-v"],
            stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env)
        the_rig.procs.append(server)
        _wait_for_line(log_path, "boot server listening", server, timeout=15)
        yield the_rig
    finally:
        the_rig.teardown()


@contextmanager
def lone_bmc(root: Path, name: str = "solo") -> Iterator[VirtualMachine]:
    """An ipmi_sim BMC whose "machine" is a sleeping process (no QEMU, no namespace, no root)."""
    if shutil.which("ipmi_sim") is None:
        raise RigUnavailable("missing: ipmi_sim (Debian package openipmi)")
    vm = VirtualMachine(name=name, uuid=str(uuidlib.uuid4()), mac="52:54:00:aa:00:01",
                        tap="", vmdir=root / name)
    vm.vmdir.mkdir(parents=True)
    (vm.vmdir / "vm.json").write_text(json.dumps({
        "name": name, "uuid": vm.uuid, "mac": vm.mac, "tap": "", "netns": "",
        "qemu": str(HERE / "fake_qemu.sh")}))
    try:
        start_bmc(vm)
        yield vm
    finally:
        vm.stop()
