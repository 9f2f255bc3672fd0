"""The kernel command line the Image Factory serves for a metal PXE boot, per Talos version.

The factory's ``/pxe/<schematic>/<version>/metal-<arch>`` script boots
``kernel-<arch>`` with the command line Talos's imager builds
(``pkg/imager`` ``buildCmdline``, gated by ``pkg/machinery/imager/quirks``):

1. ``talos.platform=metal`` and the metal console (``console=ttyS0 console=tty0``
   on amd64 before v1.8, ``console=tty0`` after; ``console=ttyAMA0 console=tty0``
   on arm64);
2. Talos's default arguments (``pkg/machinery/kernel`` ``DefaultArgs``): the IMA
   arguments up to v1.10.x, ``selinux=1`` from v1.10, ``module.sig_enforce=1``
   from v1.12, ``proc_mem.force_override=never`` from v1.13;
3. the schematic's META values as ``talos.environment=INSTALLER_META_BASE64=…``
   (``pkg/machinery/meta`` ``Values.Encode``): ``0x<key>=<value>`` joined by
   ``;``, gzip-compressed from v1.6.3 when longer than 256 bytes, base64;
4. the schematic's extra kernel arguments, merged as Talos's procfs cmdline
   merges them: ``console`` and ``talos.platform`` replace the defaults, a
   ``-name`` argument removes ``name`` (``-name=value`` one value of it), any other
   argument adds a value to its key, keeping the key's first position.

Pure functions; the command line may hold secrets (an Omni join URL, META).
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterable, Sequence

from talprov.providers.errors import InvalidRequest
from talprov.providers.types import Arch, MetaValue
from talprov.talos.versions import TalosVersion, parse_version

META_ENV = "INSTALLER_META_BASE64"
_IMA_ARGS = ("ima_template=ima-ng", "ima_appraise=fix", "ima_hash=sha512")
_OVERWRITTEN = ("console", "talos.platform")
_GZIP_THRESHOLD = 256


def default_args(version: TalosVersion) -> list[str]:
    """Talos's default kernel arguments at ``version`` (``kernel.DefaultArgs``)."""
    args = ["init_on_alloc=1", "slab_nomerge", "pti=on", "consoleblank=0",
            "nvme_core.io_timeout=4294967295", "printk.devkmsg=on"]
    if not version.at_least(1, 11):  # SupportsIMA: up to 1.10.99
        args.extend(_IMA_ARGS)
    if version.at_least(1, 10):
        args.append("selinux=1")
    if version.at_least(1, 12):
        args.append("module.sig_enforce=1")
    if version.at_least(1, 13):
        args.append("proc_mem.force_override=never")
    return args


def metal_console_args(arch: Arch, version: TalosVersion) -> list[str]:
    """The metal platform's console arguments (its ``KernelArgs``)."""
    if Arch(arch) is Arch.ARM64:
        return ["console=ttyAMA0", "console=tty0"]
    return ["console=ttyS0", "console=tty0"] if not version.at_least(1, 8) else ["console=tty0"]


def encode_meta(values: Sequence[MetaValue], version: TalosVersion) -> str:
    """META values as Talos's installer reads them from ``INSTALLER_META_BASE64``.

    Raises ``InvalidRequest`` (field ``meta_values``) for a value holding ``;``,
    which Talos's decoder would split into a broken entry. Pure.
    """
    for value in values:
        if ";" in value.value:
            raise InvalidRequest("a META value passed on the kernel command line cannot "
                                 "contain ';'", field="meta_values")
    raw = ";".join(f"0x{value.key:x}={value.value}" for value in values).encode()
    if version.at_least(1, 6, 3) and len(raw) > _GZIP_THRESHOLD:
        # mtime 0 keeps the bytes stable; Go's deflate output differs from zlib's, but
        # Talos only checks the gzip magic and decompresses.
        raw = gzip.compress(raw, compresslevel=9, mtime=0)
    return base64.b64encode(raw).decode()


def factory_cmdline(
    version: str,
    arch: Arch,
    *,
    meta_values: Sequence[MetaValue] = (),
    extra_args: Iterable[str] = (),
) -> list[str]:
    """The command line of the factory's metal PXE script for ``version`` and ``arch``.

    ``extra_args`` are the schematic's extra kernel arguments (and anything
    talprov adds the same way). Raises ``InvalidRequest`` for a malformed
    version or an unencodable META value. Pure.
    """
    parsed = parse_version(version)
    line = _Cmdline()
    line.append_all(["talos.platform=metal"])
    line.set_all(metal_console_args(arch, parsed))
    line.append_all(default_args(parsed))
    if meta_values:
        line.append_all([f"talos.environment={META_ENV}={encode_meta(meta_values, parsed)}"])
    line.merge_extra(list(extra_args))
    return line.args()


def merge_kernel_args(base: Iterable[str], extra: Iterable[str]) -> list[str]:
    """``extra`` merged into ``base`` as the imager merges a schematic's extra args. Pure."""
    line = _Cmdline()
    line.append_all(base)
    line.merge_extra(extra)
    return line.args()


class _Cmdline:
    """An ordered map key → values, rendered ``key=value`` (or ``key`` for an empty value)."""

    def __init__(self) -> None:
        self._params: dict[str, list[str]] = {}

    @staticmethod
    def _parse(args: Iterable[str]) -> dict[str, list[str]]:
        parsed: dict[str, list[str]] = {}
        for arg in " ".join(args).split():
            key, _, value = arg.partition("=")
            parsed.setdefault(key, []).append(value)
        return parsed

    def append_all(self, args: Iterable[str]) -> None:
        for key, values in self._parse(args).items():
            self._params.setdefault(key, []).extend(values)

    def set_all(self, args: Iterable[str]) -> None:
        for key, values in self._parse(args).items():
            self._params[key] = values  # keeps the key's position when it exists

    def merge_extra(self, args: Iterable[str]) -> None:
        for key, values in self._parse(args).items():
            if len(key) > 1 and key.startswith("-"):
                name = key[1:]
                if values[0] == "":
                    self._params.pop(name, None)
                elif name in self._params:
                    self._params[name] = [v for v in self._params[name] if v not in values]
            elif key in _OVERWRITTEN:
                self._params[key] = values
            else:
                self._params.setdefault(key, []).extend(values)

    def args(self) -> list[str]:
        return [f"{key}={value}" if value else key
                for key, values in self._params.items() for value in values]
