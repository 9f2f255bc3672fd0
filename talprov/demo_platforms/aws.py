"""EC2 in ``talprov demo`` (and for tests): moto's server on 127.0.0.1, seeded with Talos AMIs.

Needs ``moto[server]`` (the ``demo`` extra). The server runs as a separate
process (the ``moto_server`` command next to the running Python), so it outlives
a crash of the talprov process that uses it. The "official" Talos AMIs it knows
are owned by Sidero Labs' account id and named as Sidero Labs names them, so the
AWS provider finds them exactly as it does on AWS.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talprov.aws.images import AWS_ARCH, OFFICIAL_OWNER
from talprov.processes import stop_process
from talprov.talos.versions import DEFAULT_TALOS_VERSION

DEFAULT_REGIONS = ("us-east-1", "eu-west-1")
DEFAULT_VERSIONS = ("v1.10.7", "v1.11.5", DEFAULT_TALOS_VERSION)
STARTUP_TIMEOUT = 20.0
#: An image with an official-looking name from another account, which must never be picked.
FOREIGN_AMI = "ami-0f0f0f0f0f0f0f0f0"


def talos_ami_id(version: str, region: str, arch: str) -> str:
    """The stable fake AMI id the emulator gives (version, region, arch)."""
    digest = hashlib.sha256(f"{version}/{region}/{arch}".encode()).hexdigest()
    return f"ami-{digest[:17]}"


def talos_amis(
    versions: tuple[str, ...] = DEFAULT_VERSIONS, regions: tuple[str, ...] = DEFAULT_REGIONS
) -> list[dict[str, Any]]:
    """AMI records in moto's ``MOTO_AMIS_PATH`` format."""
    amis: list[dict[str, Any]] = []
    for version in versions:
        for region in regions:
            for arch, aws_arch in AWS_ARCH.items():
                amis.append({
                    "ami_id": talos_ami_id(version, region, arch),
                    "name": f"talos-{version}-{region}-{arch}",
                    "description": f"Talos {version} {arch}",
                    "owner_id": OFFICIAL_OWNER,
                    "public": True,
                    "virtualization_type": "hvm",
                    "architecture": aws_arch,
                    "state": "available",
                    "platform": None,
                    "image_type": "machine",
                    "hypervisor": "xen",
                    "root_device_name": "/dev/xvda",
                    "root_device_type": "ebs",
                    "sriov": "simple",
                })
    if amis:
        amis.append({**amis[0], "ami_id": FOREIGN_AMI, "owner_id": "111122223333"})
    return amis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fake_credentials() -> dict[str, str]:
    """Environment giving boto3 throwaway credentials and no real profile or metadata."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": DEFAULT_REGIONS[0],
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@dataclass
class LocalEc2:
    """A running moto server process on 127.0.0.1."""

    url: str
    process: subprocess.Popen[bytes]
    amis_path: Path

    def reset(self) -> None:
        """Forget every resource (the seeded AMIs come back)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - our own server
            pass

    def stop(self) -> None:
        """Stop the server process. Idempotent."""
        stop_process(self.process)


def _moto_server_command() -> str:
    beside = Path(sys.executable).with_name("moto_server")
    if beside.exists():
        return str(beside)
    found = shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server not found: pip install 'talprov[demo]'")
    return found


def start_local_ec2(
    work_dir: Path, *, versions: tuple[str, ...] = DEFAULT_VERSIONS,
    regions: tuple[str, ...] = DEFAULT_REGIONS, port: int | None = None,
) -> LocalEc2:
    """Start ``moto_server`` on 127.0.0.1 seeded with Talos AMIs; returns once it answers.

    Raises RuntimeError when moto is not installed or the server does not answer
    within STARTUP_TIMEOUT seconds. The caller stops it with ``stop()``.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    amis_path = work_dir / "talos-amis.json"
    amis_path.write_text(json.dumps(talos_amis(versions, regions)))
    port = port or free_port()
    env = {**os.environ, **fake_credentials(), "MOTO_AMIS_PATH": str(amis_path)}
    process = subprocess.Popen(
        [_moto_server_command(), "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310
                return LocalEc2(url, process, amis_path)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError("moto_server did not start")
