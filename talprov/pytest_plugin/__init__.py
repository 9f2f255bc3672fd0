"""talprov's pytest plugin: emulated clouds and talprov itself as fixtures.

Installed with ``pip install 'talprov[testing]'`` (entry point ``pytest11``:
``talprov``); see docs/testing.md. Loading it starts nothing: an emulator starts
the first time a test asks for its fixture, once per session, and is reset
before every test that uses it.

Fixtures: ``talprov_aws`` (moto EC2 with Talos AMIs), ``talprov_proxmox``
(fakepve), ``talprov_vmware`` (vcsim), ``talprov_openstack`` (the fake
OpenStack cloud), ``talprov_factory`` (the Image Factory stand-in),
``talprov_config`` (a talprov.yaml pointing at the emulators the test uses),
``talprov_store``, ``talprov_cli``, ``talprov_loop``, ``talprov_service``,
``talprov_clock`` and ``talprov_faults``.
"""

from __future__ import annotations

import pytest

from talprov.pytest_plugin.fixtures import (
    _talprov_aws_session,
    _talprov_factory_session,
    _talprov_openstack_session,
    _talprov_proxmox_session,
    _talprov_vmware_session,
    talprov_aws,
    talprov_cli,
    talprov_clock,
    talprov_config,
    talprov_emulator_dir,
    talprov_factory,
    talprov_faults,
    talprov_loop,
    talprov_openstack,
    talprov_proxmox,
    talprov_service,
    talprov_store,
    talprov_store_url,
    talprov_vmware,
)

__all__ = [
    "_talprov_aws_session",
    "_talprov_factory_session",
    "_talprov_openstack_session",
    "_talprov_proxmox_session",
    "_talprov_vmware_session",
    "pytest_addoption",
    "talprov_aws",
    "talprov_cli",
    "talprov_clock",
    "talprov_config",
    "talprov_emulator_dir",
    "talprov_factory",
    "talprov_faults",
    "talprov_loop",
    "talprov_openstack",
    "talprov_proxmox",
    "talprov_service",
    "talprov_store",
    "talprov_store_url",
    "talprov_vmware",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's options (group "talprov")."""
    group = parser.getgroup("talprov", "talprov's emulator fixtures")
    group.addoption("--talprov-vcsim", metavar="PATH", dest="talprov_vcsim",
                    help="The vcsim binary for talprov_vmware (default: $TALPROV_VCSIM, "
                    "else vcsim on PATH).")
    group.addoption("--talprov-store-url", metavar="URL", dest="talprov_store_url",
                    help="Store for talprov_store and talprov_config, e.g. "
                    "postgresql+psycopg://user@127.0.0.1/db (default: SQLite in tmp_path). "
                    "Its tables are emptied after every test.")
    group.addoption("--talprov-skip-missing", action="store_true", dest="talprov_skip_missing",
                    help="Skip tests whose emulator is not installed, instead of failing them.")
