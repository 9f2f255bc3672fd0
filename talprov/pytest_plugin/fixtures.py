"""The plugin's fixtures. Nothing starts until a test asks for a fixture; each
emulator then starts once per session and is reset before each test that uses it.

Heavy imports (boto3, moto, proxmoxer, pyVmomi, the service) happen inside the
fixtures, so loading the plugin costs a pytest run nothing it does not use.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
import yaml

from talprov.pytest_plugin.faults import Ec2FaultProxy, Faults
from talprov.pytest_plugin.platforms import (
    VCSIM_HELP,
    AwsEmulator,
    OpenStackEmulator,
    ProxmoxEmulator,
    VSphereEmulator,
    find_vcsim,
)
from talprov.pytest_plugin.service import RunningService, start_service

if TYPE_CHECKING:
    from click.testing import Result

    from talprov.runloop import RunLoop
    from talprov.store.store import Store
    from talprov.testing import FakeClock
    from talprov.testing.factory import FakeImageFactory
    from talprov.testing.openstack import FakeOpenStack

#: Fixture name -> provider instance name in the config talprov_config writes.
PLATFORM_FIXTURES = {"talprov_aws": "aws", "talprov_proxmox": "proxmox",
                     "talprov_vmware": "vmware", "talprov_openstack": "openstack"}


def _skip_or_fail(config: pytest.Config, message: str) -> NoReturn:
    if config.getoption("talprov_skip_missing"):
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def use_fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Throwaway AWS credentials in the environment for one test, and no profile, role
    or web identity that could lead boto3 to a real account."""
    from talprov.demo_platforms.aws import fake_credentials

    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in fake_credentials().items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def talprov_emulator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's emulators keep their files and logs."""
    return tmp_path_factory.mktemp("talprov-emulators")


# ------------------------------------------------------------------------ AWS (moto)


@pytest.fixture(scope="session")
def _talprov_aws_session(talprov_emulator_dir: Path,
                         pytestconfig: pytest.Config) -> Iterator[AwsEmulator]:
    import shutil
    import sys

    from talprov.demo_platforms.aws import start_local_ec2

    if not (Path(sys.executable).with_name("moto_server").exists()
            or shutil.which("moto_server")):
        _skip_or_fail(pytestconfig, "talprov_aws: moto's server is not installed "
                      "(pip install 'talprov[testing]')")
    try:
        server = start_local_ec2(talprov_emulator_dir / "moto")
    except RuntimeError as exc:
        pytest.fail(f"talprov_aws: {exc} (pip install 'talprov[testing]')", pytrace=False)
    emulator = AwsEmulator(server, Ec2FaultProxy(server.url).start())
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def talprov_aws(_talprov_aws_session: AwsEmulator, monkeypatch: pytest.MonkeyPatch,
                ) -> AwsEmulator:
    """moto's EC2 on 127.0.0.1, seeded with Talos AMIs, empty of instances; throwaway
    AWS credentials in the environment (no real profile or metadata service is read)."""
    use_fake_aws_credentials(monkeypatch)
    _talprov_aws_session.reset()
    return _talprov_aws_session


# ------------------------------------------------------------------ Proxmox (fakepve)


@pytest.fixture(scope="session")
def _talprov_proxmox_session(talprov_emulator_dir: Path,
                             pytestconfig: pytest.Config) -> Iterator[ProxmoxEmulator]:
    from talprov.demo_platforms import fakepve_command

    if fakepve_command() is None:
        _skip_or_fail(pytestconfig, "talprov_proxmox: fakepve is not installed "
                      "(pip install 'talprov[testing]')")
    folder = talprov_emulator_dir / "fakepve"
    folder.mkdir()
    emulator = ProxmoxEmulator.start(folder)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def talprov_proxmox(_talprov_proxmox_session: ProxmoxEmulator) -> ProxmoxEmulator:
    """fakepve on 127.0.0.1 (node pve1) with no VMs and a placeholder Talos ISO."""
    _talprov_proxmox_session.reset()
    return _talprov_proxmox_session


# ------------------------------------------------------------------- vSphere (vcsim)


@pytest.fixture(scope="session")
def _talprov_vmware_session(talprov_emulator_dir: Path,
                            pytestconfig: pytest.Config) -> Iterator[VSphereEmulator]:
    from talprov.demo_platforms.vmware import VSphereDemo

    try:
        binary = find_vcsim(pytestconfig.getoption("talprov_vcsim"))
    except ValueError as exc:
        pytest.fail(f"talprov_vmware: {exc}", pytrace=False)
    if binary is None:
        _skip_or_fail(pytestconfig, f"talprov_vmware: no vcsim binary. {VCSIM_HELP}")
    folder = talprov_emulator_dir / "vcsim"
    folder.mkdir()
    emulator = VSphereEmulator(VSphereDemo.start(folder, binary))
    try:
        emulator.baseline = emulator.vm_names()
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def talprov_vmware(_talprov_vmware_session: VSphereEmulator) -> VSphereEmulator:
    """vcsim on 127.0.0.1 with a template to clone and none of the last test's VMs."""
    _talprov_vmware_session.reset()
    return _talprov_vmware_session


# ------------------------------------------------- Image Factory stand-in, OpenStack


@pytest.fixture(scope="session")
def _talprov_factory_session() -> Iterator[FakeImageFactory]:
    from talprov.testing.factory import FakeImageFactory

    with FakeImageFactory() as factory:
        yield factory


@pytest.fixture
def talprov_factory(_talprov_factory_session: FakeImageFactory) -> FakeImageFactory:
    """The local Image Factory stand-in (schematics, images, PXE scripts), its hits,
    faults and schematics forgotten. talprov_config points ``image_factory`` at it."""
    _talprov_factory_session.reset()
    return _talprov_factory_session


@pytest.fixture(scope="session")
def _talprov_openstack_session() -> Iterator[FakeOpenStack]:
    from talprov.testing.openstack import FakeOpenStack

    cloud = FakeOpenStack().start()
    try:
        yield cloud
    finally:
        cloud.stop()


@pytest.fixture
def talprov_openstack(_talprov_openstack_session: FakeOpenStack,
                      talprov_factory: FakeImageFactory) -> OpenStackEmulator:
    """The fake OpenStack cloud, freshly seeded (zones az1/az2, flavors, networks
    private and public), with the Image Factory stand-in for its images."""
    _talprov_openstack_session.reset()
    return OpenStackEmulator(_talprov_openstack_session, talprov_factory)


# --------------------------------------------------------------- store, config, CLI


@pytest.fixture
def talprov_store_url(pytestconfig: pytest.Config, tmp_path: Path) -> Iterator[str]:
    """SQLite in the test's tmp_path, or ``--talprov-store-url`` (PostgreSQL; every
    table of talprov's is emptied after the test)."""
    given: str | None = pytestconfig.getoption("talprov_store_url")
    if not given:
        yield f"sqlite:///{tmp_path / 'talprov.db'}"
        return
    yield given
    import sqlalchemy as sa

    from talprov.store.schema import metadata

    engine = sa.create_engine(given)
    try:
        with engine.begin() as connection:
            for table in reversed(metadata.sorted_tables):
                connection.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture
def talprov_store(talprov_store_url: str) -> Iterator[Store]:
    """talprov's store (schema upgraded), the one talprov_config names."""
    from talprov.store.store import Store

    store = Store(talprov_store_url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


@dataclass
class TalprovConfig:
    """The talprov.yaml the fixtures wrote: ``path``, its ``data``, and the provider
    instance names (``aws``, ``proxmox``, ``vmware``, ``openstack``) it configures."""

    path: Path
    data: dict[str, Any]
    providers: list[str] = field(default_factory=list)

    def update(self, **top_level: Any) -> None:
        """Change top-level keys and write the file again."""
        self.data.update(top_level)
        self.path.write_text(yaml.safe_dump(self.data, sort_keys=False))


@pytest.fixture
def talprov_config(request: pytest.FixtureRequest, tmp_path: Path,
                   talprov_store_url: str) -> TalprovConfig:
    """A talprov.yaml with one provider instance per emulator fixture the test uses
    (named aws, proxmox, vmware, openstack), the test's store and, when the test
    uses talprov_factory or talprov_openstack, the Image Factory stand-in."""
    data: dict[str, Any] = {"store": talprov_store_url, "installation": "pytest",
                            "cache_dir": str(tmp_path / "talprov-cache"), "providers": {}}
    names = []
    for fixture, name in PLATFORM_FIXTURES.items():
        if fixture in request.fixturenames:
            emulator = request.getfixturevalue(fixture)
            data["providers"][name] = emulator.provider_block()
            names.append(name)
    if {"talprov_factory", "talprov_openstack"} & set(request.fixturenames):
        factory = request.getfixturevalue("talprov_factory")
        data["image_factory"] = {"url": factory.url}
    config = TalprovConfig(tmp_path / "talprov.yaml", data, names)
    config.update()
    return config


class CliRunner:
    """Runs ``talprov --config <talprov_config> ARGS`` in-process with click's runner."""

    def __init__(self, config: TalprovConfig) -> None:
        self.config = config

    def __call__(self, *args: str, check: bool = True, input: str | None = None) -> Result:
        """Run the command; with ``check`` (default) fail the test unless it exits 0.
        The result has ``exit_code``, ``stdout`` and ``stderr``."""
        from click.testing import CliRunner as ClickRunner

        from talprov.cli import cli

        result = ClickRunner().invoke(cli, ["--config", str(self.config.path), *args],
                                      input=input, catch_exceptions=False)
        if check and result.exit_code != 0:
            pytest.fail(f"talprov {' '.join(args)} exited {result.exit_code}:\n"
                        f"{result.stdout}{result.stderr}", pytrace=False)
        return result


@pytest.fixture
def talprov_cli(talprov_config: TalprovConfig) -> CliRunner:
    """``talprov_cli("machine", "create", "-f", path, "--wait")``: the talprov command
    against talprov_config; a click Result (stdout, stderr, exit_code)."""
    return CliRunner(talprov_config)


@pytest.fixture
def talprov_loop(talprov_config: TalprovConfig) -> Iterator[RunLoop]:
    """talprov's RunLoop (the loop ``serve`` runs) over every provider instance of
    talprov_config: ``run_round()`` or ``run_until(done, timeout=...)``."""
    from talprov.cli.app import App

    app = App(config_path=str(talprov_config.path), store_url=None)
    loop = app.run_loop()
    try:
        yield loop
    finally:
        loop.close()
        app.close()


@pytest.fixture
def talprov_service(talprov_config: TalprovConfig, tmp_path: Path) -> Iterator[RunningService]:
    """``talprov serve`` on 127.0.0.1 (with its workers) over talprov_config, with a
    write token for every instance: ``.url``, ``.token``, ``.headers``."""
    token = secrets.token_urlsafe(24)
    token_file = tmp_path / "service-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    talprov_config.update(service={
        "tokens": [{"name": "pytest", "value": f"${{file:{token_file}}}",
                    "access": "write"}],
        "reconcile_interval": 0.5})
    service = start_service(talprov_config.path, token, tmp_path / "serve.log")
    try:
        yield service
    finally:
        service.stop()


# ------------------------------------------------------------------ clock and faults


@pytest.fixture
def talprov_clock() -> FakeClock:
    """A FakeClock: pass ``Runtime(clock=talprov_clock, sleep=talprov_clock.sleep)``."""
    from talprov.testing import FakeClock

    return FakeClock()


@pytest.fixture
def talprov_faults(request: pytest.FixtureRequest) -> Iterator[Faults]:
    """``talprov_faults.fail("aws", "RunInstances", after=True, times=2)``; see
    :mod:`talprov.pytest_plugin.faults`. Rules end with the test."""

    def emulator(name: str) -> Callable[[], Any]:
        return lambda: request.getfixturevalue(name)

    aws, proxmox = emulator("_talprov_aws_session"), emulator("_talprov_proxmox_session")
    faults = Faults(lambda: aws().proxy, lambda: proxmox().server)
    try:
        yield faults
    finally:
        used = {f.platform for f in faults.added}
        if "aws" in used:
            aws().proxy.clear()
        if "proxmox" in used:
            proxmox().server.control("clear_failures")
