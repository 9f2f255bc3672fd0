"""How the OpenStack driver meets quotas, throttling, expired tokens and slow builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from talprov.openstack.config import OpenStackAuth, OpenStackConfig
from talprov.openstack.provider import OpenStackProvider
from talprov.providers.errors import (
    AuthError,
    CapacityError,
    InstanceAccessRefused,
    InvalidRequest,
    QuotaExceeded,
    StepTimeout,
    Transient,
)
from tests.unit.openstack.harness import Harness


def test_instance_quota_is_quota_exceeded_and_releases_the_ports(harness: Harness) -> None:
    harness.cloud.set_quota("instances", 0)
    ctx = harness.context(harness.request("full"))
    for name in ("resolve-image", "resolve-flavor", "ensure-server-group", "ensure-ports"):
        harness.run_step(name, ctx)
    assert len(harness.cloud.ports()) == 1

    with pytest.raises(QuotaExceeded, match="Quota exceeded for instances"):
        harness.run_step("ensure-server", ctx)
    assert harness.cloud.ports() == []
    assert ctx.state.port_ids == []

    # Once the quota is raised, the same step recreates the ports and boots.
    harness.cloud.set_quota("instances", None)
    harness.run_step("ensure-server", ctx)
    harness.run_step("wait-active", ctx)
    assert [s.status for s in harness.cloud.servers()] == ["ACTIVE"]
    assert len(harness.cloud.ports()) == 1


def test_port_over_quota_is_quota_exceeded(harness: Harness) -> None:
    harness.cloud.set_quota("port", 0)
    ctx = harness.context(harness.request("noports"))
    with pytest.raises(QuotaExceeded, match="port"):
        harness.run_step("ensure-ports", ctx)


def test_throttled_list_is_retried_after_the_servers_retry_after(harness: Harness) -> None:
    harness.provision(harness.request("busy"))
    harness.clock.sleeps.clear()
    harness.cloud.fail_next("GET", r"/servers/detail$", 429, count=2, retry_after=7)
    machines = harness.provider.list_machines(harness.owner)
    assert [m.request_id for m in machines] == ["busy"]
    assert len(harness.clock.sleeps) == 2
    assert all(s >= 7 for s in harness.clock.sleeps)


def test_persistent_5xx_is_transient_with_retry_after(harness: Harness) -> None:
    harness.cloud.fail_next("GET", r"/servers/detail$", 503, count=100, retry_after=3)
    with pytest.raises(Transient) as caught:
        harness.provider.list_machines(harness.owner)
    assert caught.value.retry_after == 3
    assert not caught.value.permanent


def test_expired_token_is_renewed_transparently(harness: Harness) -> None:
    harness.provision(harness.request("renew"))
    harness.cloud.revoke_tokens()
    assert [m.request_id for m in harness.provider.list_machines(harness.owner)] == ["renew"]


def test_revoked_credentials_are_an_auth_error(harness: Harness) -> None:
    harness.provision(harness.request("revoked"))
    harness.cloud.change_password("rotated-elsewhere")
    harness.cloud.revoke_tokens()
    with pytest.raises(InstanceAccessRefused) as caught:
        harness.provider.list_machines(harness.owner)
    # The instance's trouble: its requests wait for new credentials, none fails.
    assert isinstance(caught.value, AuthError)
    assert not caught.value.permanent
    health = harness.provider.health()
    assert not health.ok


def test_wrong_password_is_unhealthy_without_raising(harness: Harness) -> None:
    auth = {**harness.cloud.auth(), "password": "not-the-password"}
    provider = OpenStackProvider(
        "bad", OpenStackConfig(auth=OpenStackAuth(**auth)), harness.runtime)
    health = provider.health()
    assert not health.ok
    assert "not-the-password" not in health.message
    with pytest.raises(AuthError):
        provider.list_machines(harness.owner)
    with pytest.raises(AuthError):
        provider.deprovision(harness.context(harness.request("x")))
    assert harness.provider.health().ok


def test_application_credential_auth_works(harness: Harness) -> None:
    cred_id, secret = harness.cloud.add_application_credential()
    auth = OpenStackAuth(auth_url=harness.cloud.auth_url, application_credential_id=cred_id,
                         application_credential_secret=secret)
    provider = OpenStackProvider("app", OpenStackConfig(auth=auth), harness.runtime)
    assert provider.health().ok
    assert secret not in repr(auth)


def test_slow_build_is_waited_for_with_retries(harness: Harness) -> None:
    harness.cloud.slow_builds(3)
    ctx = harness.context(harness.request("slow"))
    for name in ("resolve-image", "resolve-flavor", "ensure-server-group", "ensure-ports",
                 "ensure-server"):
        harness.run_step(name, ctx)
    retries = harness.run_step("wait-active", ctx)
    # Each pass's single listing is one poll of the build.
    assert retries == 3
    assert harness.cloud.servers()[0].status == "ACTIVE"


def test_slow_build_times_out(harness: Harness, tmp_path: Path) -> None:
    harness = Harness(harness.cloud, harness.factory, tmp_path, active_timeout=30)
    harness.cloud.slow_builds(1000)
    ctx = harness.context(harness.request("stuck"))
    for name in ("resolve-image", "resolve-flavor", "ensure-server-group", "ensure-ports",
                 "ensure-server"):
        harness.run_step(name, ctx)
    with pytest.raises(StepTimeout, match="still BUILD"):
        harness.run_step("wait-active", ctx)


def test_no_valid_host_everywhere_is_a_capacity_error_without_ports(harness: Harness) -> None:
    harness.cloud.no_valid_host("az1", count=5)
    harness.cloud.no_valid_host("az2", count=5)
    ctx = harness.context(harness.request("nowhere", availability_zone=["az1", "az2"]))
    for name in ("resolve-image", "resolve-flavor", "ensure-server-group", "ensure-ports",
                 "ensure-server"):
        harness.run_step(name, ctx)
    with pytest.raises(CapacityError, match="no valid host in"):
        harness.run_step("wait-active", ctx)
    assert harness.cloud.servers() == []
    assert harness.cloud.ports() == []
    assert len(ctx.state.discarded_servers) == 2


def test_cloud_from_clouds_yaml(harness: Harness, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {"fake": {
        "auth": harness.cloud.auth(), "region_name": "RegionOne"}}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    provider = OpenStackProvider("yaml", OpenStackConfig(cloud="fake"), harness.runtime)
    assert provider.health().ok


def test_os_environment_variables(harness: Harness, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "absent.yaml"))
    auth = harness.cloud.auth()
    for key, value in auth.items():
        monkeypatch.setenv(f"OS_{key.upper()}", value)
    provider = OpenStackProvider("env", OpenStackConfig(), harness.runtime)
    assert provider.health().ok


def test_an_error_quoting_user_data_does_not_leak_it(harness: Harness) -> None:
    from talprov.openstack.errors import scrub

    secret = "c2VjcmV0LW1hY2hpbmUtY29uZmln"
    error = InvalidRequest(f"create server: HTTP 400: Value: {secret} is not valid")
    assert scrub(error, secret)
    assert secret not in str(error)
    assert secret not in repr(error.args)
    assert not scrub(InvalidRequest("other"), secret)


def test_a_stale_queued_image_is_replaced(harness: Harness) -> None:
    from talprov.openstack.images import key_for

    request = harness.request("stale")
    key = key_for(request, harness.runtime)
    stale = harness.cloud.add_image(key.name, **key.properties(harness.config))
    with harness.cloud.lock:
        harness.cloud.state.images[stale.id].status = "queued"
    ctx = harness.provision(request)
    images = harness.cloud.images()
    assert [i.status for i in images] == ["active"]
    assert images[0].id == ctx.state.image_id != stale.id


def test_an_image_being_uploaded_elsewhere_is_waited_for(harness: Harness) -> None:
    from talprov.openstack.images import key_for

    request = harness.request("waiting")
    key = key_for(request, harness.runtime)
    busy = harness.cloud.add_image(key.name, **key.properties(harness.config))
    with harness.cloud.lock:
        harness.cloud.state.images[busy.id].status = "saving"
    with pytest.raises(Transient, match="being uploaded"):
        harness.run_step("resolve-image", harness.context(request))


def test_other_build_failures_delete_the_server_and_report_the_fault(
        harness: Harness) -> None:
    from talprov.openstack.errors import ServerBuildFailed

    harness.cloud.fail_builds("az1", "Build of instance aborted: Volume creation failed")
    ctx = harness.context(harness.request("broken", availability_zone="az1"))
    for name in ("resolve-image", "resolve-flavor", "ensure-server-group", "ensure-ports",
                 "ensure-server"):
        harness.run_step(name, ctx)
    with pytest.raises(ServerBuildFailed, match="Volume creation failed") as caught:
        harness.run_step("wait-active", ctx)
    assert caught.value.permanent
    assert harness.cloud.servers() == []
    assert harness.cloud.ports() == []
