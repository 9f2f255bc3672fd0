"""``talprov demo``: a whole cluster's machines on a local EC2 emulator, no account needed.

It starts moto's EC2 server on 127.0.0.1 seeded with Talos AMIs, writes a
throwaway config, spec and machine configs, applies the spec through the real
AWS driver, scaler and reconciler (as `talprov apply --wait` would), checks what
EC2 received, shows a status table, and cleans up unless ``--keep``.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click
import yaml

from talprov.cli.app import EXIT_FAILED, App, fail, handle_errors
from talprov.cli.cluster import converge, scaler_for
from talprov.cli.output import emit
from talprov.scaler.spec import load_spec_file

REGION = "us-east-1"
TALOS_VERSION = "v1.11.5"


def machine_config(kind: str, cluster: str) -> str:
    """A small Talos machine config for the demo (its token is made up here)."""
    return yaml.safe_dump({
        "version": "v1alpha1",
        "machine": {"type": kind, "token": secrets.token_hex(8),
                    "install": {"disk": "/dev/xvda"}},
        "cluster": {"clusterName": cluster,
                    "controlPlane": {"endpoint": "https://demo.talprov.internal:6443"}},
    }, sort_keys=False)


def default_subnets(endpoint: str) -> list[tuple[str, str]]:
    """(availability zone, subnet id) of the emulator's default VPC, two at most."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    found = sorted((s["AvailabilityZone"], s["SubnetId"]) for s in subnets["Subnets"])
    return found[:2]


def write_files(workdir: Path, endpoint: str, control_planes: int, workers: int) -> Path:
    """talprov.yaml, machine configs and cluster.yaml; returns the spec's path."""
    (workdir / "talprov.yaml").write_text(yaml.safe_dump({
        "store": f"sqlite:///{workdir / 'state.db'}",
        "installation": "demo",
        "cache_dir": str(workdir / "cache"),
        "providers": {"aws-demo": {"type": "aws", "region": REGION, "endpoint_url": endpoint,
                                   "poll_interval": 1.0, "concurrency": 16}},
    }, sort_keys=False))
    (workdir / "controlplane.yaml").write_text(machine_config("controlplane", "demo"))
    (workdir / "worker.yaml").write_text(machine_config("worker", "demo"))
    domains = [{"name": zone, "provider_data": {"subnets": [subnet]}}
               for zone, subnet in default_subnets(endpoint)]
    documents: list[dict[str, Any]] = [
        {"kind": "Cluster", "name": "demo", "talos": {"version": TALOS_VERSION}},
        {"kind": "MachineClass", "name": "aws-small", "provider": "aws-demo",
         "provider_data": {"instance_type": "t3.small"}, "failureDomains": domains},
        {"kind": "ControlPlane", "machineClass": {"name": "aws-small", "size": control_planes},
         "config": {"file": "controlplane.yaml"}},
        {"kind": "Workers", "name": "workers",
         "machineClass": {"name": "aws-small", "size": workers},
         "config": {"file": "worker.yaml"}, "update": {"maxSurge": 1, "maxUnavailable": 0}},
    ]
    spec = workdir / "cluster.yaml"
    spec.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return spec


def verify_instances(app: App, endpoint: str) -> list[dict[str, Any]]:
    """Each request's instance as EC2 sees it, checked against what talprov sent."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
    rows = []
    for record in app.store.list_requests(labels={"talprov.cluster": "demo"}):
        if record.infra_id is None:
            continue
        found = ec2.describe_instances(InstanceIds=[record.infra_id])
        instance = found["Reservations"][0]["Instances"][0]
        user_data = ec2.describe_instance_attribute(
            InstanceId=record.infra_id, Attribute="userData")["UserData"].get("Value", "")
        config_ok = base64.b64decode(user_data).decode() == (
            record.request.machine_config.get_secret_value())
        imds = instance.get("MetadataOptions", {}).get("HttpTokens")
        rows.append({
            "request": record.request.id,
            "set": record.request.labels.get("talprov.set"),
            "stage": record.stage.value,
            "instance": record.infra_id,
            "zone": instance["Placement"]["AvailabilityZone"],
            "address": instance.get("PrivateIpAddress"),
            "state": instance["State"]["Name"],
            "user-data": "matches config" if config_ok else "MISMATCH",
            "imds": imds,
        })
    return rows


@click.command()
@click.option("--control-planes", default=3, show_default=True, type=click.IntRange(1, 7))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0, 50))
@click.option("--keep", is_flag=True,
              help="Leave the emulator, config and machines in place to explore.")
@click.option("--dir", "directory", type=click.Path(path_type=Path),
              help="Work directory (default: a new temporary one).")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to converge.")
@handle_errors
def demo(control_planes: int, workers: int, keep: bool, directory: Path | None,
         timeout: float) -> None:
    """Provision a sample cluster's machines on a local EC2 emulator (moto), then clean up.

    No AWS account or network access is needed: everything runs on 127.0.0.1.
    """
    try:
        from talprov.aws.emulator import fake_credentials, start_local_ec2
    except ImportError:
        fail("the demo needs the demo extra: pip install 'talprov[demo]'")
    workdir = directory or Path(tempfile.mkdtemp(prefix="talprov-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.update(fake_credentials())
    click.echo(f"starting a local EC2 emulator (moto) seeded with Talos {TALOS_VERSION} AMIs...",
               err=True)
    try:
        server = start_local_ec2(workdir / "moto")
    except RuntimeError as exc:
        fail(f"cannot start the EC2 emulator: {exc}", EXIT_FAILED)
    app = App(config_path=str(write_files(workdir, server.url, control_planes, workers).parent
                              / "talprov.yaml"), store_url=None)
    ok = False
    try:
        click.echo(f"work directory: {workdir}", err=True)
        spec = load_spec_file(workdir / "cluster.yaml")
        scaler = scaler_for(app)
        scaler.record(spec)
        click.echo(f"applying cluster 'demo': {control_planes} control planes, "
                   f"{workers} workers", err=True)
        ok = converge(app, scaler, "demo", timeout)
        rows = verify_instances(app, server.url)
        emit(rows, "table", title="demo cluster on the local EC2 emulator")
        good = all(r["user-data"] == "matches config" and r["imds"] == "required"
                   for r in rows)
        ok = ok and good and len(rows) == control_planes + workers
        if keep:
            click.echo(
                f"\nkept: emulator at {server.url} (pid {server.process.pid}).\n"
                f"  export TALPROV_CONFIG={workdir / 'talprov.yaml'} AWS_ACCESS_KEY_ID=testing "
                f"AWS_SECRET_ACCESS_KEY=testing\n  talprov status demo; talprov machine list\n"
                f"  talprov destroy demo --wait; kill {server.process.pid}", err=True)
            return
        click.echo("destroying the cluster...", err=True)
        scaler.destroy("demo")
        _destroy(app, scaler)
    finally:
        app.close()
        if not keep:
            server.stop()
            if directory is None:
                shutil.rmtree(workdir, ignore_errors=True)
    if not ok:
        fail("the demo did not converge as expected", EXIT_FAILED)
    click.echo("demo finished: machines created, checked and destroyed.", err=True)


def _destroy(app: App, scaler: Any) -> None:
    reconciler = app.reconciler()

    def gone() -> bool:
        scaler.run_pass("demo")
        return not scaler.records("demo") and scaler.state("demo") is None

    if not reconciler.run_until(gone, timeout=300, interval=1.0):
        fail("demo machines were not all removed", EXIT_FAILED)
    click.echo("all demo instances terminated.", err=True)
