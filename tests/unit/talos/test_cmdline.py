"""The factory's metal PXE command line, checked against Talos's and the factory's vectors.

Sources (read in their public repositories): siderolabs/talos ``pkg/imager/imager_test.go``
(cmdline per version and arch), ``pkg/machinery/kernel/kernel_test.go`` (DefaultArgs per
version), ``pkg/machinery/meta/meta_test.go`` (META encoding); siderolabs/image-factory
``internal/integration/download_test.go`` (META and extra-args cmdlines); siderolabs/go-procfs
``procfs/cmdline_test.go`` (how extra args merge, with console overwritten and negation).
"""

from __future__ import annotations

import base64
import gzip

import pytest

from talprov.providers.errors import InvalidRequest
from talprov.providers.types import Arch, MetaValue
from talprov.talos.cmdline import (
    default_args,
    encode_meta,
    factory_cmdline,
    merge_kernel_args,
)
from talprov.talos.versions import parse_version

HARDENING = ("init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
             "nvme_core.io_timeout=4294967295 printk.devkmsg=on")
IMA = "ima_template=ima-ng ima_appraise=fix ima_hash=sha512"


@pytest.mark.parametrize(("version", "arch", "expected"), [
    ("v1.7.0", "amd64", f"talos.platform=metal console=ttyS0 console=tty0 {HARDENING} {IMA}"),
    ("v1.7.0", "arm64", f"talos.platform=metal console=ttyAMA0 console=tty0 {HARDENING} {IMA}"),
    ("v1.8.0", "amd64", f"talos.platform=metal console=tty0 {HARDENING} {IMA}"),
    ("v1.10.1", "amd64", f"talos.platform=metal console=tty0 {HARDENING} {IMA} selinux=1"),
    ("v1.10.1", "arm64",
     f"talos.platform=metal console=ttyAMA0 console=tty0 {HARDENING} {IMA} selinux=1"),
    ("v1.11.0", "amd64", f"talos.platform=metal console=tty0 {HARDENING} selinux=1"),
    ("v1.11.0", "arm64",
     f"talos.platform=metal console=ttyAMA0 console=tty0 {HARDENING} selinux=1"),
])
def test_imager_vectors(version: str, arch: str, expected: str) -> None:
    assert " ".join(factory_cmdline(version, Arch(arch))) == expected


@pytest.mark.parametrize(("version", "tail"), [
    ("v1.9.0", IMA.split()),
    ("v1.12.0", ["selinux=1", "module.sig_enforce=1"]),
    ("v1.13.0", ["selinux=1", "module.sig_enforce=1", "proc_mem.force_override=never"]),
    ("v1.14.0", ["selinux=1", "module.sig_enforce=1", "proc_mem.force_override=never"]),
])
def test_default_args_vectors(version: str, tail: list[str]) -> None:
    assert default_args(parse_version(version)) == [*HARDENING.split(), *tail]


def test_factory_meta_vector_and_extra_args_come_last() -> None:
    meta = (MetaValue(key=0x0a, value='{"externalIPs":["1.2.3.4"]}'),)
    line = factory_cmdline("v1.11.0", Arch.AMD64, meta_values=meta)
    assert line[-1] == ("talos.environment=INSTALLER_META_BASE64="
                        "MHhhPXsiZXh0ZXJuYWxJUHMiOlsiMS4yLjMuNCJdfQ==")
    extra = factory_cmdline("v1.13.9", Arch.AMD64, extra_args=["nolapic", "nomodeset"])
    assert " ".join(extra).endswith(
        "selinux=1 module.sig_enforce=1 proc_mem.force_override=never nolapic nomodeset")


def test_meta_encoding_vectors() -> None:
    version = parse_version("v1.13.9")
    simple = encode_meta([MetaValue(key=10, value="foo"), MetaValue(key=0xb, value="bar")],
                         version)
    assert base64.b64decode(simple) == b"0xa=foo;0xb=bar"
    assert len(simple) == 20  # meta_test.go: expectedEncodedSize
    huge = [MetaValue(key=10, value="foobar" * 256), MetaValue(key=0xb, value="baz" * 256)]
    raw = f"0xa={'foobar' * 256};0xb={'baz' * 256}".encode()
    assert len(base64.b64encode(raw)) == 3084  # meta_test.go, without gzip
    packed = base64.b64decode(encode_meta(huge, version))
    assert packed[:2] == b"\x1f\x8b"  # Talos's decoder looks for the gzip magic
    assert gzip.decompress(packed) == raw
    # Before v1.6.3 Talos's installer could not read compressed META.
    assert base64.b64decode(encode_meta(huge, parse_version("v1.6.2"))) == raw


def test_meta_values_talos_would_split_are_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        encode_meta([MetaValue(key=10, value="a;b")], parse_version("v1.13.9"))
    assert caught.value.field == "meta_values"


# go-procfs AppendAll cases run with WithOverwriteArgs("console") and
# WithDeleteNegatedArgs(), as the imager applies a schematic's extra args.
@pytest.mark.parametrize(("initial", "extra", "expected"), [
    ("console=tty0 console=ttyS0 root=/dev/sdb", ["console=tty0", "console=ttyS1,115200", "nogui"],
     "console=tty0 console=ttyS1,115200 root=/dev/sdb nogui"),
    ("console=tty0 console=ttyS0 root=/dev/sdb", ["-console", "nogui"], "root=/dev/sdb nogui"),
    ("console=tty0 console=ttyS0 root=/dev/sdb", ["-console=tty0", "nogui"],
     "console=ttyS0 root=/dev/sdb nogui"),
    ("console=tty0 console=ttyS0 root=/dev/sdb", ["-console", "nogui", "console=ttyAMA0"],
     "root=/dev/sdb nogui console=ttyAMA0"),
    ("console=tty0 console=ttyS0 root=/dev/sdb", ["-console=tty0", "nogui", "console=ttyAMA0"],
     "console=ttyAMA0 root=/dev/sdb nogui"),
    ("ip=dhcp console=x root=/dev/sdc", ["root=/dev/sda", "root=/dev/sdb"],
     "ip=dhcp console=x root=/dev/sdc root=/dev/sda root=/dev/sdb"),
    ("root=/dev/sdb", ["this=that=those"], "root=/dev/sdb this=that=those"),
])
def test_procfs_merge_vectors(initial: str, extra: list[str], expected: str) -> None:
    assert " ".join(merge_kernel_args(initial.split(), extra)) == expected
