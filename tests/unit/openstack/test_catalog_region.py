"""A region (or interface) the Keystone catalog has no endpoint for: QA found
``config check --connect`` showing a bare ``ServiceDisabledException`` and steps
raising the SDK's exception untranslated (a WARNING per attempt), the listing
classed as "credentials refused"."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from talprov.openstack.catalog import missing_endpoint
from talprov.openstack.config import OpenStackAuth, OpenStackConfig
from talprov.openstack.provider import OpenStackProvider
from talprov.providers.errors import AuthError, InstanceUnavailable, error_kind
from talprov.providers.types import MachineRequest
from talprov.reconcile.reconciler import ProviderHandle, Reconciler
from talprov.store.store import Store
from tests.unit.openstack.harness import Harness


def _elsewhere(harness: Harness, **settings: str) -> OpenStackProvider:
    config = OpenStackConfig(auth=OpenStackAuth(**harness.cloud.auth()),
                             **{"region": "RegionOne", **settings})
    return OpenStackProvider("os-test", config, harness.runtime)


def test_health_names_the_region_field_and_the_catalogs_regions(harness: Harness) -> None:
    health = _elsewhere(harness, region="Nowhere").health()
    assert not health.ok
    assert "providers.os-test.region" in health.message
    assert "'Nowhere'" in health.message
    assert "RegionOne" in health.message
    assert "ServiceDisabledException" not in health.message


def test_listing_and_steps_raise_instance_unavailable_not_refused_credentials(
        harness: Harness) -> None:
    provider = _elsewhere(harness, region="Nowhere")
    with pytest.raises(InstanceUnavailable) as listing:
        provider.list_machines(harness.owner)
    assert not isinstance(listing.value, AuthError)
    assert error_kind(listing.value) != "credentials refused"
    assert "providers.os-test.region" in str(listing.value)
    ctx = harness.context(harness.request("r1"))
    # ensure-server-group makes no call for a request without a group.
    for step in [s for s in provider.steps()[:4] if s.name != "ensure-server-group"]:
        with pytest.raises(InstanceUnavailable, match=r"providers\.os-test\.region"):
            step.run(ctx)


def test_an_interface_the_region_lacks_names_the_interface_field(harness: Harness) -> None:
    health = _elsewhere(harness, interface="internal").health()
    assert not health.ok
    assert "providers.os-test.interface" in health.message
    assert "public" in health.message


def test_a_reconciler_warns_once_not_per_attempt(
        harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    provider = _elsewhere(harness, region="Nowhere")
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    try:
        store.create_request(MachineRequest(id="r1", provider="os-test",
                                            talos_version="v1.13.9",
                                            provider_data={"flavor": "m1.small",
                                                           "networks": ["private"]}))
        with caplog.at_level(logging.WARNING), Reconciler(
                store, {"os-test": ProviderHandle(provider)}, harness.runtime) as reconciler:
            # The pass report's errors are what the CLI and service warn with.
            errors = []
            for _ in range(4):
                errors += reconciler.run_pass().errors
                harness.clock.sleep(120)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert not [w for w in warnings if "ServiceDisabledException" in w], warnings
        assert len(errors) == 1, errors
        assert "providers.os-test.region" in errors[0]
        assert "credentials refused" not in errors[0]
    finally:
        store.close()


def test_the_message_without_a_region_or_a_catalog() -> None:
    error = missing_endpoint("os1", "image", None, "public", [{"type": "compute", "endpoints": [
        {"interface": "public", "region_name": "RegionOne"}]}],
        "The service is not present in the service catalog")
    assert str(error) == ("providers.os1.region: the Keystone catalog has no 'public' image "
                          "endpoint in any region")
    unknown = missing_endpoint("os1", "image", "R2", "public", None,
                               "The service is not present in the service catalog")
    assert str(unknown).endswith("endpoint in region 'R2'")
