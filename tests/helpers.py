"""Shared test helpers: a throwaway talprov home, the CLI as a subprocess or in process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

REPO = Path(__file__).resolve().parent.parent

#: Canaries: placed in machine configs and provider credentials by tests; the
#: suite checks they never appear in any output or log it produced.
CANARY_CONFIG = "CANARY-ca-key-7f3a9c2e51"
CANARY_CREDENTIAL = "CANARY-credential-b84d0e66"

#: Every output the helpers saw, for the end-of-session canary check.
SEEN_OUTPUT: list[str] = []

WORKER_CONFIG = f"""\
version: v1alpha1
machine:
  type: worker
  token: {CANARY_CONFIG}
  ca:
    crt: LS0tLS1CRUdJTi
    key: {CANARY_CONFIG}
cluster:
  controlPlane:
    endpoint: https://192.0.2.1:6443
"""


def write_plugin_dist(directory: Path) -> Path:
    """Register the test provider ``file`` through a real entry point.

    Written as a dist-info folder, exactly what pip leaves for a plugin package,
    so the registry finds it the way it finds any third-party driver.
    """
    dist = directory / "talprov_testprov-0.0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: talprov-testprov\nVersion: 0.0.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[talprov.providers]\nfile = tests.providers.fileprov:FileProvider\n"
    )
    return directory


@dataclass
class Home:
    """A throwaway talprov installation: config, store, cache, plugin path."""

    root: Path
    plugin_dir: Path
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / "talprov.yaml"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.root / 'state.db'}"

    def cloud_path(self, name: str = "cloud") -> str:
        return str(self.root / f"{name}.sqlite")

    def write_config(self, **extra: Any) -> Path:
        body: dict[str, Any] = {
            "store": self.store_url,
            "cache_dir": str(self.root / "cache"),
            "providers": self.providers,
            **extra,
        }
        self.config_path.write_text(yaml.safe_dump(body))
        return self.config_path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.plugin_dir), str(REPO)])
        env["TALPROV_CONFIG"] = str(self.config_path)
        env["XDG_STATE_HOME"] = str(self.root / "state")
        env["XDG_CACHE_HOME"] = str(self.root / "xdgcache")
        env["XDG_CONFIG_HOME"] = str(self.root / "xdgconfig")
        env["HOME"] = str(self.root)
        return env

    def write_request(self, name: str, **fields: Any) -> Path:
        config = self.root / "worker.yaml"
        if not config.exists():
            config.write_text(WORKER_CONFIG)
        body: dict[str, Any] = {
            "id": name,
            "provider": "fake",
            "talos_version": "v1.13.9",
            "config": {"file": "worker.yaml"},
            "labels": {"role": "worker"},
            **fields,
        }
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(body))
        return path

    def write_spec(self, *, version: str = "v1.13.9", **workers: Any) -> Path:
        """cluster.yaml: cluster c1 (Talos ``version``), class ``small`` on ``fake`` and
        a Workers set ``w`` of one, its fields updated by ``workers`` (None drops one)."""
        config = self.root / "worker.yaml"
        if not config.exists():
            config.write_text(WORKER_CONFIG)
        worker_set: dict[str, Any] = {
            "kind": "Workers", "name": "w", "machineClass": {"name": "small", "size": 1},
            "config": {"file": "worker.yaml"}}
        worker_set.update(workers)
        docs = [{"kind": "Cluster", "name": "c1", "talos": {"version": version}},
                {"kind": "MachineClass", "name": "small", "provider": "fake"},
                {k: v for k, v in worker_set.items() if v is not None}]
        path = self.root / "cluster.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        return path

    def run(self, *args: str, timeout: float = 120, check: bool = False
            ) -> subprocess.CompletedProcess[str]:
        """Run ``talprov ARGS`` as a real process."""
        proc = subprocess.run(
            [sys.executable, "-m", "talprov", *args], env=self.env(), cwd=self.root,
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        SEEN_OUTPUT.append(proc.stdout + proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"talprov {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def invoke(self, *args: str, input: str | None = None) -> Result:
        """Run ``talprov ARGS`` in this process (fast; for most CLI tests)."""
        from talprov.cli import cli

        runner = CliRunner()
        result = runner.invoke(cli, ["--config", str(self.config_path), *args], input=input,
                               env={"XDG_STATE_HOME": str(self.root / "state"),
                                    "XDG_CACHE_HOME": str(self.root / "xdgcache")})
        SEEN_OUTPUT.append(result.output + (result.stderr if result.stderr_bytes else ""))
        return result
