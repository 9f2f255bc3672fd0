"""Every example marked runnable in README.md, docs/ and examples/ runs against the
demo's emulators, as a reader would run it after `talprov demo --keep`.

Markdown: a fenced block whose info string holds the word ``runnable`` runs; a
``yaml``/other block with ``name=FILE`` is written to FILE first, an ``sh``
block runs in bash (``-e``: every line must succeed), in order, one fresh work
directory per document. examples/: a file whose first line is ``# talprov …`` is
copied into a fresh directory and that command runs. Every document shares one
moto EC2 server and the config the demo writes for it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO, SEEN_OUTPUT

FENCE = re.compile(r"^```(\S*)[ \t]*(.*)$")
#: `talprov` for the snippets: this interpreter's talprov. A command on PATH, not
#: a shell function, so that `talprov serve &` makes `$!` the server itself (a
#: function in the background is a subshell, and killing it leaves the server).
LAUNCHER = '#!/bin/sh\nexec "$TALPROV_PYTHON" -m talprov "$@"\n'


@dataclass(frozen=True)
class Block:
    language: str
    name: str | None
    text: str
    line: int


def runnable_blocks(path: Path) -> list[Block]:
    """The runnable fenced blocks of a Markdown file, in order."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None or not match.group(1):
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1
        words = match.group(2).split()
        if "runnable" in words:
            name = next((w.split("=", 1)[1] for w in words if w.startswith("name=")), None)
            blocks.append(Block(match.group(1), name, "\n".join(body) + "\n", start + 1))
    return blocks


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def example_commands() -> list[tuple[Path, str]]:
    found = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        if first.startswith("# talprov "):
            found.append((path, first[2:]))
    return found


@dataclass
class DemoWorld:
    workdir: Path
    env: dict[str, str]

    def fresh_dir(self, tmp: Path, name: str) -> Path:
        where = tmp / name
        where.mkdir()
        for config in ("controlplane.yaml", "worker.yaml"):
            shutil.copy(self.workdir / config, where / config)
        return where

    def run(self, script: str, cwd: Path, what: str) -> None:
        # A session of its own: what the block starts in the background (a serve)
        # goes with it, also when it runs out of time.
        proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=cwd, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            stderr += "\n(killed after 120 s)"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        SEEN_OUTPUT.append(stdout + stderr)
        assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{script}\n" \
                                     f"{stdout}\n{stderr}"


@pytest.fixture(scope="module")
def demo_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWorld]:
    """What `talprov demo --keep` leaves: moto EC2 and the config for it."""
    from talprov.cli.demo import AwsDemo, kept_exports, write_files
    from talprov.demo_platforms.aws import fake_credentials
    from talprov.demo_platforms.factory import DemoFactory

    workdir = tmp_path_factory.mktemp("demo")
    factory = DemoFactory(workdir / "factory")
    platform = AwsDemo(workdir / "moto")
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in fake_credentials().items():
                patch.setenv(key, value)  # write_files asks moto for its subnets
            config = write_files(workdir, [platform], 1, 1, factory_url=factory.url)
        home = tmp_path_factory.mktemp("home")
        launcher = home / "bin" / "talprov"
        launcher.parent.mkdir()
        launcher.write_text(LAUNCHER)
        launcher.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TALPROV_"))}
        # Only what the README tells a reader to export after `demo --keep` (QA: the
        # AWS credentials were set here but not in the README, and a reader's
        # request failed without them).
        exported = kept_exports(workdir, [platform])
        assert exported["TALPROV_CONFIG"] == str(config)
        env.update(exported, TALPROV_PYTHON=sys.executable,
                   PATH=f"{launcher.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   HOME=str(home), XDG_STATE_HOME=str(home / "state"),
                   XDG_CACHE_HOME=str(home / "cache"), XDG_CONFIG_HOME=str(home / "config"))
        yield DemoWorld(workdir, env)
    finally:
        platform.stop()
        factory.stop()


def test_the_readme_has_runnable_examples() -> None:
    # Guards the extraction itself: the README's config, request and spec are marked.
    names = {b.name for b in runnable_blocks(REPO / "README.md")}
    assert {"my-talprov.yaml", "web-1.yaml", "web.yaml"} <= names
    assert example_commands()


def test_the_readme_exports_what_demo_keep_prints(tmp_path: Path) -> None:
    """The README's steps after `demo --keep` name every variable the demo's
    export line sets, with its value where it is fixed (not a path)."""
    from talprov.cli.demo import AwsDemo, kept_exports

    readme = (REPO / "README.md").read_text()
    start = readme.index("run `talprov demo --keep`")
    steps = readme[start:readme.index("A request file", start)]
    platform = AwsDemo.__new__(AwsDemo)  # kept_exports reads its type, no moto needed
    exported = kept_exports(tmp_path, [platform])
    assert set(exported) == {"TALPROV_CONFIG", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for name, value in exported.items():
        assert name in steps, name
        if name.startswith("AWS_"):
            assert f"{name}={value}" in steps, name


@pytest.mark.parametrize("guide", ["aws", "proxmox", "vmware", "openstack"])
def test_the_cloud_guides_worked_examples_are_runnable(guide: str) -> None:
    # Their config and request files are checked (config check, machine create)
    # without the cloud; bare metal's needs an inventory and a boot network.
    blocks = runnable_blocks(REPO / "docs" / "providers" / f"{guide}.md")
    assert len([b for b in blocks if b.name]) == 2, blocks
    assert any("machine create" in b.text for b in blocks if b.language == "sh")


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_runnable_blocks_of_a_document_run(document: Path, demo_world: DemoWorld,
                                           tmp_path: Path) -> None:
    blocks = runnable_blocks(document)
    if not blocks:
        return  # nothing marked in this document
    where = demo_world.fresh_dir(tmp_path, "doc")
    for block in blocks:
        what = f"{document.relative_to(REPO)}:{block.line}"
        if block.name is not None:
            (where / block.name).write_text(block.text)
        elif block.language == "sh":
            demo_world.run(block.text, where, what)
        else:
            raise AssertionError(f"{what}: a runnable {block.language} block needs name=FILE")


@pytest.mark.parametrize("example", example_commands(), ids=lambda e: e[0].name)
def test_each_example_file_runs_its_first_line(example: tuple[Path, str],
                                               demo_world: DemoWorld, tmp_path: Path) -> None:
    path, command = example
    where = demo_world.fresh_dir(tmp_path, "example")
    shutil.copy(path, where / path.name)
    demo_world.run(command + "\n", where, f"examples/{path.name}")


def test_the_demo_config_names_only_loopback_addresses(demo_world: DemoWorld) -> None:
    """The demo (and so every runnable example) never makes talprov reach the
    internet: every URL of its config, defaults included, is on loopback."""
    import ipaddress
    from urllib.parse import urlsplit

    from talprov.config import load_config

    loaded = load_config(demo_world.env["TALPROV_CONFIG"])
    urls = [loaded.config.image_factory.url]
    for block in loaded.config.providers.values():
        urls += [v for v in block.model_dump().values() if isinstance(v, str) and "://" in v]
    urls += re.findall(r"\w+://[^\s'\"]+", Path(demo_world.env["TALPROV_CONFIG"]).read_text())
    assert len(urls) >= 2, urls  # the factory and the EC2 endpoint at least
    for url in urls:
        host = urlsplit(url).hostname
        if url.startswith("sqlite:"):
            continue
        assert host is not None, url
        assert ipaddress.ip_address(host).is_loopback, url


def test_what_a_block_starts_in_the_background_goes_with_it(tmp_path: Path) -> None:
    world = DemoWorld(tmp_path, dict(os.environ))
    world.run("sleep 300 >/dev/null 2>&1 &\necho $! > pid\n", tmp_path, "a background sleep")
    pid = int((tmp_path / "pid").read_text())
    # SIGKILL takes effect when the kernel next schedules the process (CI once saw
    # it still running just after the kill): gone, or a zombie until init reaps
    # it, within a few seconds. A sleep 300 that was not killed stays for minutes.
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + 10
    while stat.exists() and time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, IndexError):
            if stat.read_text().split(") ", 1)[1].startswith("Z"):
                break
        time.sleep(0.05)
    state = ""
    with contextlib.suppress(FileNotFoundError, IndexError):
        state = stat.read_text().split(") ", 1)[1][:1]
    assert state in ("", "Z"), f"the background sleep is still there (state {state})"
