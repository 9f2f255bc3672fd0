"""The platforms ``talprov demo`` provisions on, each on a local emulator: AWS on moto
(:mod:`talprov.demo_platforms.aws`, always there with the ``demo`` extra), and
Proxmox VE and vSphere when their emulators are present.

Each runs on a local emulator that the demo starts as its own process on
127.0.0.1 and stops again: fakepve (``pip install fakepve``) for Proxmox VE,
govmomi's vcsim (the binary ``tests/emulators/vcsim/build.sh`` builds in a
checkout, or the one ``TALPROV_VCSIM`` names) for vSphere. A platform whose
emulator or driver libraries are missing is skipped with one line saying why.

There is no Image Factory in the demo (no network), so neither driver downloads
a Talos image: Proxmox boots a placeholder ISO uploaded through the PVE API
(provider_data ``iso``), vSphere clones a template made from one of vcsim's
sample VMs (provider_data ``template``). Neither emulator runs guests; what the
demo checks is what the platform was given.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from talprov.demo_platforms.common import COLUMNS, DemoPlatform, Row

__all__ = ["COLUMNS", "EXTRA_PLATFORMS", "PLATFORMS", "DemoPlatform", "Row", "choose_platforms",
           "fakepve_command", "start_platform", "unavailable_reason", "vcsim_binary"]

EXTRA_PLATFORMS = ("proxmox", "vmware")
PLATFORMS = ("aws", *EXTRA_PLATFORMS)
VCSIM_ENV = "TALPROV_VCSIM"


def _missing_modules(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def fakepve_command() -> str | None:
    """The ``fakepve`` command beside this Python or on PATH, or None."""
    beside = Path(sys.executable).with_name("fakepve")
    return str(beside) if beside.exists() else shutil.which("fakepve")


def vcsim_binary(environ: Mapping[str, str] | None = None,
                 checkout: Path | None = None) -> tuple[Path | None, str]:
    """(the vcsim binary, "") or (None, why there is none).

    ``TALPROV_VCSIM`` wins; otherwise the binary build.sh leaves in the checkout
    talprov runs from (an editable install).
    """
    named = (os.environ if environ is None else environ).get(VCSIM_ENV)
    if named:
        path = Path(named)
        if path.is_file():
            return path, ""
        return None, f"{VCSIM_ENV} names {named}, which is not a file"
    root = checkout or Path(__file__).resolve().parents[2]
    built = root / "tests" / "emulators" / "vcsim" / "bin" / "vcsim"
    if (root / "pyproject.toml").is_file() and built.is_file():
        return built, ""
    return None, (f"no vcsim binary (set {VCSIM_ENV}, or run tests/emulators/vcsim/build.sh "
                  "in a talprov checkout)")


def unavailable_reason(platform: str) -> str | None:
    """Why ``platform``'s emulator or driver cannot run here, or None when it can."""
    if platform == "proxmox":
        missing = _missing_modules("proxmoxer", "requests", "pycdlib")
        if missing:
            return f"the Proxmox driver needs {', '.join(missing)} (pip install 'talprov[proxmox]')"
        if fakepve_command() is None:
            return "fakepve is not installed (pip install fakepve)"
        return None
    if platform == "vmware":
        if _missing_modules("pyVmomi"):
            return "the vSphere driver needs pyvmomi (pip install 'talprov[vmware]')"
        binary, reason = vcsim_binary()
        return None if binary is not None else reason
    raise ValueError(f"unknown platform {platform!r}")


def choose_platforms(requested: str | None) -> tuple[list[str], list[str]]:
    """(platforms to run, one line per extra platform skipped and why).

    Without ``requested`` (a comma-separated list): aws plus every platform whose
    emulator is present. Raises ``ValueError`` for an empty list, an unknown
    platform, one named twice, or one asked for by name that cannot run here.
    """
    if requested is None:
        chosen, skipped = ["aws"], []
        for name in EXTRA_PLATFORMS:
            reason = unavailable_reason(name)
            if reason is None:
                chosen.append(name)
            else:
                skipped.append(f"{name}: skipped: {reason}")
        return chosen, skipped
    listed = [n.strip() for n in requested.split(",") if n.strip()]
    # A set would hide a name given twice: refuse it, as a typo may be behind it.
    twice = sorted({n for n in listed if listed.count(n) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} {'is' if len(twice) == 1 else 'are'} "
                         "named twice; name each platform once")
    names = set(listed)
    if not names:
        # `--platforms ''` (a variable left empty): "unknown (none given)" said
        # neither what was missing nor that leaving the option out is the default.
        raise ValueError(f"no platform given; name one or more of {', '.join(PLATFORMS)}, "
                         "comma-separated, or leave --platforms out for aws plus every "
                         "platform whose emulator is installed")
    unknown = sorted(names - set(PLATFORMS))
    if unknown:
        raise ValueError(f"unknown {', '.join(unknown)}; choose from {', '.join(PLATFORMS)}")
    for name in sorted(names & set(EXTRA_PLATFORMS)):
        reason = unavailable_reason(name)
        if reason is not None:
            raise ValueError(f"{name} cannot run here: {reason}")
    return [n for n in PLATFORMS if n in names], []


def start_platform(platform: str, workdir: Path, talos_version: str) -> DemoPlatform:
    """Start ``platform``'s emulator in ``workdir/<platform>`` and prepare an image.

    Raises ``RuntimeError`` (the emulator is stopped again) when it cannot.
    """
    folder = workdir / platform
    folder.mkdir(parents=True, exist_ok=True)
    if platform == "proxmox":
        from talprov.demo_platforms.proxmox import ProxmoxDemo

        command = fakepve_command()
        if command is None:
            raise RuntimeError("fakepve is not installed")
        return ProxmoxDemo.start(folder, command, talos_version)
    if platform == "vmware":
        from talprov.demo_platforms.vmware import VSphereDemo

        binary, reason = vcsim_binary()
        if binary is None:
            raise RuntimeError(reason)
        return VSphereDemo.start(folder, binary)
    raise ValueError(f"unknown platform {platform!r}")
