"""``talprov demo``: a whole cluster's machines on local emulators, no account needed.

It starts moto's EC2 server on 127.0.0.1 seeded with Talos AMIs (and, when they
are installed, fakepve for Proxmox VE and vcsim for vSphere: see
``talprov.demo_platforms``), writes a throwaway config, spec and machine
configs, applies the spec through the real drivers, scaler and reconciler (as
`talprov apply --wait` would), checks what each platform received, shows a
status table, and cleans up unless ``--keep``: it destroys the machines (within
``--timeout``), stops the emulators and removes its temporary directory. What it
leaves (``--keep``, or a clean-up that ran out of time) is said with the command
that cleans it up, and a later demo refuses the directory until that ran
(:mod:`talprov.cli.demo_kept`).
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

from talprov.cli.app import EXIT_FAILED, App, fail, handle_errors, stdin_is_terminal
from talprov.cli.cluster_loop import converge, scaler_for, sets_progress, wait_destroyed
from talprov.cli.demo_kept import (
    EMULATORS_FILE,
    clean_up_command,
    exports_for,
    kept_demo,
    record_emulators,
    refusal,
)
from talprov.cli.invoked import talprov_line
from talprov.cli.numbers import WAIT_SECONDS
from talprov.cli.output import closed_stdout, emit, least_width, lose_stdout, terminal_width
from talprov.demo_platforms import (
    COLUMNS,
    DemoPlatform,
    Row,
    choose_platforms,
    start_platform,
)
from talprov.demo_platforms.factory import DemoFactory
from talprov.providers.errors import ProviderError
from talprov.scaler.spec import load_spec_file
from talprov.store.records import RequestRecord
from talprov.talos.versions import DEFAULT_TALOS_VERSION
from talprov.words import counted

REGION = "us-east-1"
TALOS_VERSION = DEFAULT_TALOS_VERSION


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


class AwsDemo:
    """EC2 on moto: instances from the seeded official Talos AMIs, config in user-data."""

    name = "aws"
    provider = "aws-demo"

    def __init__(self, workdir: Path) -> None:
        from talprov.demo_platforms.aws import start_local_ec2

        self.server = start_local_ec2(workdir)

    def provider_block(self) -> dict[str, Any]:
        return {"type": "aws", "region": REGION, "endpoint_url": self.server.url,
                "poll_interval": 1.0, "concurrency": 16}

    def machine_class(self) -> dict[str, Any]:
        domains = [{"name": zone, "provider_data": {"subnets": [subnet]}}
                   for zone, subnet in default_subnets(self.server.url)]
        return {"kind": "MachineClass", "name": "aws-small", "provider": self.provider,
                "provider_data": {"instance_type": "t3.small"}, "failureDomains": domains}

    def verify(self, records: list[RequestRecord]) -> list[dict[str, Any]]:
        """Each request's instance as EC2 sees it: user-data is the config, IMDSv2."""
        import boto3

        from talprov.talos.join import user_data_for

        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=self.server.url)
        rows = []
        for record in records:
            row = Row(self.name, record)
            if record.infra_id is not None:
                found = ec2.describe_instances(InstanceIds=[record.infra_id])
                instance = found["Reservations"][0]["Instances"][0]
                user_data = ec2.describe_instance_attribute(
                    InstanceId=record.infra_id, Attribute="userData")["UserData"].get("Value", "")
                # The demo's AWS instance keeps name_machines' default (off): on EC2
                # Talos takes its hostname from the instance metadata.
                config_ok = base64.b64decode(user_data).decode() == user_data_for(
                    record.request, named=False)
                imds = instance.get("MetadataOptions", {}).get("HttpTokens")
                row.where = instance["Placement"]["AvailabilityZone"]
                row.address = instance.get("PrivateIpAddress")
                row.state = instance["State"]["Name"]
                row.config = "matches config" if config_ok else "MISMATCH"
                row.check = f"imds {imds}"
                row.ok = config_ok and imds == "required"
            rows.append(row.as_dict())
        return rows

    def stop(self) -> None:
        self.server.stop()

    def pid(self) -> int:
        return self.server.process.pid

    def keep_hint(self) -> str:
        return f"moto (EC2) at {self.server.url} (pid {self.server.process.pid})"


#: The first line of every file the demo writes: the mark that lets it overwrite them.
DEMO_MARK = "# written by `talprov demo`; it may overwrite this file\n"
DEMO_FILES = ("talprov.yaml", "cluster.yaml", "controlplane.yaml", "worker.yaml")


def refuse_foreign_files(workdir: Path) -> None:
    """Exit 2 (or ask, on a terminal) when ``workdir`` holds a file the demo would
    overwrite that the demo did not write: a user's own talprov.yaml or cluster.yaml
    is never replaced silently. Idempotent."""
    for name in DEMO_FILES:
        path = workdir / name
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                first = handle.readline()
        except FileNotFoundError:
            continue
        except OSError as exc:
            fail(f"{path}: cannot read: {exc.strerror}")
        if first == DEMO_MARK:
            continue
        if not stdin_is_terminal():
            fail(f"{path} exists and was not written by the demo; pick another --dir "
                 "or move the file")
        if not click.confirm(f"{path} was not written by the demo. Overwrite it?",
                             default=False, err=True):
            fail("nothing done", EXIT_FAILED)


def write_files(workdir: Path, platforms: list[DemoPlatform], control_planes: int,
                workers: int, *, factory_url: str) -> Path:
    """talprov.yaml, machine configs and cluster.yaml; returns talprov.yaml's path.

    The control planes go to the first platform; every platform gets a Workers
    set of ``workers`` machines (the first one's is called ``workers``). The
    Image Factory is ``factory_url``, the demo's local stand-in: without it the
    config would fall back to factory.talos.dev.
    """
    config = workdir / "talprov.yaml"
    config.write_text(DEMO_MARK + yaml.safe_dump({
        "store": f"sqlite:///{workdir / 'state.db'}",
        "installation": "demo",
        "cache_dir": str(workdir / "cache"),
        "image_factory": {"url": factory_url},
        "providers": {p.provider: p.provider_block() for p in platforms},
    }, sort_keys=False))
    (workdir / "controlplane.yaml").write_text(DEMO_MARK
                                               + machine_config("controlplane", "demo"))
    (workdir / "worker.yaml").write_text(DEMO_MARK + machine_config("worker", "demo"))
    classes = [p.machine_class() for p in platforms]
    documents: list[dict[str, Any]] = [
        {"kind": "Cluster", "name": "demo", "talos": {"version": TALOS_VERSION}},
        *classes,
        {"kind": "ControlPlane",
         "machineClass": {"name": classes[0]["name"], "size": control_planes},
         "config": {"file": "controlplane.yaml"}},
    ]
    for index, (platform, machine_class) in enumerate(zip(platforms, classes, strict=True)):
        documents.append({
            "kind": "Workers", "name": "workers" if index == 0 else f"{platform.name}-workers",
            "machineClass": {"name": machine_class["name"], "size": workers},
            "config": {"file": "worker.yaml"}, "update": {"maxSurge": 1, "maxUnavailable": 0},
        })
    (workdir / "cluster.yaml").write_text(DEMO_MARK
                                          + yaml.safe_dump_all(documents, sort_keys=False))
    return config


def _start_factory(workdir: Path) -> DemoFactory:
    try:
        return DemoFactory(workdir / "factory")
    except (RuntimeError, OSError) as exc:
        fail(f"cannot start the Image Factory stand-in: {exc}", EXIT_FAILED)


def _start(name: str, workdir: Path) -> DemoPlatform:
    labels = {"aws": f"EC2 emulator (moto) seeded with Talos {TALOS_VERSION} AMIs",
              "proxmox": "Proxmox VE emulator (fakepve)", "vmware": "vSphere emulator (vcsim)"}
    click.echo(f"starting a local {labels[name]}...", err=True)
    try:
        if name == "aws":
            return AwsDemo(workdir / "moto")
        return start_platform(name, workdir, TALOS_VERSION)
    except (RuntimeError, OSError, ProviderError) as exc:
        fail(f"cannot start the {name} emulator: {exc}", EXIT_FAILED)


def _chosen(_ctx: click.Context, _param: click.Parameter,
            platforms: str | None) -> tuple[list[str], list[str]]:
    """``--platforms``' callback: (the platforms to run, a line per one skipped).

    Raises ``click.BadParameter`` on a bad list: a usage error naming the option,
    as click gives for ``--workers`` or ``--timeout``.
    """
    try:
        return choose_platforms(platforms)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("--control-planes", default=3, show_default=True, type=click.IntRange(1, 7))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0, 50),
              help="Workers per platform.")
@click.option("--platforms", metavar="LIST", callback=_chosen,
              help="Comma-separated, each once, from aws,proxmox,vmware (default: aws plus every "
              "platform whose emulator is installed). Control planes go to the first.")
@click.option("--keep", is_flag=True,
              help="Leave the emulators, config and machines in place to explore.")
@click.option("--dir", "directory", type=click.Path(path_type=Path),
              help="Work directory (default: a new temporary one).")
@click.option("--timeout", default=300.0, show_default=True, type=WAIT_SECONDS,
              help="Seconds each wait may take: the machines to converge, then to be "
              f"destroyed again; {WAIT_SECONDS.range_text()}.")
@handle_errors
def demo(control_planes: int, workers: int, platforms: tuple[list[str], list[str]],
         keep: bool, directory: Path | None, timeout: float) -> None:
    """Provision a sample cluster's machines on local emulators, check them, clean up.

    EC2 runs on moto; Proxmox VE on fakepve and vSphere on vcsim when those are
    installed. No account or network access is needed: everything runs on 127.0.0.1.
    """
    try:
        from talprov.demo_platforms.aws import fake_credentials
    except ImportError:
        fail("the demo needs the demo extra: pip install 'talprov[demo]'")
    names, skipped = platforms
    workdir = directory or Path(tempfile.mkdtemp(prefix="talprov-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # A kept demo first: a file a user wrote there (README's examples) would
    # otherwise hide its running emulators and the line that cleans them up.
    refuse_kept_demo(workdir)
    refuse_foreign_files(workdir)
    # Every refusal (a bad option, --dir's) comes before any line of progress: a
    # "skipped" line above an error read as part of why the demo was refused.
    for line in skipped:
        click.echo(line, err=True)
    os.environ.update(fake_credentials())
    started: list[DemoPlatform] = []
    factory: DemoFactory | None = None
    app: App | None = None
    kept = ok = False
    waiting: str | None = None
    left: list[RequestRecord] = []
    try:
        factory = _start_factory(workdir)
        _record(workdir, started, factory)
        for name in names:
            started.append(_start(name, workdir))
            _record(workdir, started, factory)
        app = App(config_path=str(write_files(workdir, started, control_planes, workers,
                                              factory_url=factory.url)),
                  store_url=None)
        click.echo(f"work directory: {workdir}", err=True)
        ok, waiting = _run(app, workdir, started, control_planes, workers, timeout)
        if keep:
            kept = True
            _show_kept(workdir, started, factory)
        else:
            left = _destroy(app, timeout)
            if left:
                # Stopping the emulators now would take the machines along while
                # the store still records them: leave all of it as --keep does.
                kept = True
                _show_left(workdir, started, factory, left, timeout)
    finally:
        if app is not None:
            app.close()
        if not kept:
            # Also after a failure half-way: no emulator outlives the demo.
            if factory is not None:
                factory.stop()
            _clean_up(started, workdir if directory is None else None)
    if not kept:
        # Every emulator is stopped: no later demo needs to look for them.
        (workdir / EMULATORS_FILE).unlink(missing_ok=True)
    _fail_unless_done(left, ok, waiting, timeout)
    click.echo("demo finished: machines created and checked, and kept." if kept
               else "demo finished: machines created, checked and destroyed.", err=True)


def _fail_unless_done(left: list[RequestRecord], ok: bool, waiting: str | None,
                      timeout: float) -> None:
    """Exit 1 naming what went wrong: the requests its clean-up ``left``, the
    sets not converged when the wait ran out (``waiting``), or machines that
    did not check out (not ``ok``)."""
    if left:
        fail(f"the demo's clean-up ran out of --timeout ({timeout:g}s) with "
             f"{counted(len(left), 'machine request')} left (above)"
             + ("" if ok else "; the cluster had not converged as expected either"),
             EXIT_FAILED)
    if waiting is not None:
        fail(f"the demo's wait for its machines ran out of --timeout ({timeout:g}s) "
             f"before cluster demo converged: {waiting}", EXIT_FAILED)
    if not ok:
        fail("the demo's machines converged but did not all check out (table above)",
             EXIT_FAILED)


def _clean_up(started: list[DemoPlatform], temporary: Path | None) -> None:
    """Stop every emulator started (newest first) and remove the temporary work dir."""
    for platform in reversed(started):
        platform.stop()
    if temporary is not None:
        shutil.rmtree(temporary, ignore_errors=True)


def refuse_kept_demo(workdir: Path) -> None:
    """Exit 2 when ``workdir`` holds an earlier demo that was not cleaned up (its
    store records machines, or its emulators still run), naming the command that
    cleans it up; otherwise forget its stale record of emulators. Reads only what
    it refuses, so the old demo stays usable."""
    try:
        kept = kept_demo(workdir)
    except ValueError as exc:
        fail(str(exc))
    if not kept.empty:
        fail(refusal(workdir, kept))
    (workdir / EMULATORS_FILE).unlink(missing_ok=True)


def kept_exports(workdir: Path, started: list[DemoPlatform]) -> dict[str, str]:
    """What a shell must export to use what ``--keep`` left: the config, and the
    AWS credentials when moto runs. Pure."""
    return exports_for(workdir, aws=any(isinstance(p, AwsDemo) for p in started))


def _record(workdir: Path, started: list[DemoPlatform], factory: DemoFactory) -> list[int]:
    """Record the emulators running, as each starts: should this process die
    without stopping them, a later demo in ``workdir`` finds them. Their pids."""
    pids = [*(p.pid() for p in started), factory.pid()]
    record_emulators(workdir, pids, [p.name for p in started])
    return pids


def _keep_running(workdir: Path, started: list[DemoPlatform],
                  factory: DemoFactory) -> tuple[str, list[int]]:
    """The emulators left running: (one line each, their pids)."""
    hints = "\n  ".join([*(p.keep_hint() for p in started), factory.keep_hint()])
    return hints, _record(workdir, started, factory)


def _show_kept(workdir: Path, started: list[DemoPlatform], factory: DemoFactory) -> None:
    hints, pids = _keep_running(workdir, started, factory)
    done = clean_up_command(workdir, kept_exports(workdir, started), pids,
                            clusters=["demo"], lone=[], sets=[])
    exports = " ".join(f"{name}={value}" for name, value in kept_exports(workdir, started).items())
    click.echo(
        f"\nkept:\n  {hints}\nto use them, in a shell:\n  cd {workdir}\n  export {exports}\n"
        f"  {talprov_line('status demo')}; {talprov_line('machine list')}\n"
        f"when done (destroy first what you added: clusters, machine create's):\n"
        f"  {done}",
        err=True)


def _show_left(workdir: Path, started: list[DemoPlatform], factory: DemoFactory,
               left: list[RequestRecord], timeout: float) -> None:
    """What a clean-up that ran out of ``timeout`` left: each request not yet
    destroyed, the emulators holding its machine, and the command that finishes."""
    hints, pids = _keep_running(workdir, started, factory)
    requests = "\n  ".join(f"{r.request.id} ({r.request.provider}, "
                           f"{r.infra_id or 'no machine yet'}, {r.stage.value})" for r in left)
    recorded = kept_demo(workdir)
    command = clean_up_command(workdir, kept_exports(workdir, started), pids,
                               clusters=recorded.clusters, lone=recorded.lone,
                               sets=recorded.sets)
    click.echo(
        f"\nthe clean-up ran out of --timeout ({timeout:g}s); left in {workdir}:\n"
        f"  {requests}\nand the emulators holding them, still running:\n  {hints}\n"
        f"to finish the clean-up, in a shell:\n  {command}", err=True)


def _run(app: App, workdir: Path, started: list[DemoPlatform], control_planes: int,
         workers: int, timeout: float) -> tuple[bool, str | None]:
    """Apply the spec, wait, show the table: (True when every machine checked out,
    the sets not converged when the wait ran out of ``timeout``, else None)."""
    spec = load_spec_file(workdir / "cluster.yaml")
    scaler = scaler_for(app)
    scaler.record(spec)
    where = ", ".join(p.name for p in started)
    click.echo(f"applying cluster 'demo': {counted(control_planes, 'control plane')}, "
               f"{counted(workers, 'worker')} "
               f"per platform ({where})", err=True)
    converged = converge(app, "demo", timeout)
    records = app.store.list_requests(labels={"talprov.cluster": "demo"})
    rows = []
    for platform in started:
        rows += platform.verify([r for r in records if r.request.provider == platform.provider])
    show_results(rows)
    expected = control_planes + workers * len(started)
    waiting = None
    if not converged:
        state = scaler.state("demo")
        waiting = "its record is gone" if state is None else sets_progress(scaler.preview(state))
    return converged and len(rows) == expected and all(r["ok"] for r in rows), waiting


#: The columns on a terminal too narrow for :data:`COLUMNS`: the request id names
#: the set, and what the platform reports is one column that wraps.
NARROW_COLUMNS = ("platform", "request", "machine", "checks")


def show_results(rows: list[dict[str, Any]]) -> None:
    """The demo's table: one row per machine, with what its platform got. On a
    terminal narrower than every column needs (80 columns), the narrow form."""
    try:
        _show_results(rows)
    except OSError as exc:
        # Its reader gone (`talprov demo | head -5`), the demo still destroys its
        # machines and stops its emulators, as after Ctrl-C it would not: the
        # table is all it writes to stdout. It exits 141 then (see talprov.cli).
        if not closed_stdout(exc):
            raise
        lose_stdout()


def _show_results(rows: list[dict[str, Any]]) -> None:
    title = "demo cluster on local emulators"
    width = terminal_width()
    if width is None or least_width(rows, COLUMNS) <= width:
        emit(rows, "table", columns=COLUMNS, title=title)
        return
    narrow = [{"platform": row["platform"], "request": row["request"],
               "machine": row["machine"],
               "checks": ", ".join(str(row[key]) for key in ("stage", "state", "config",
                                                              "check")
                                   if row.get(key) not in (None, "-"))}
              for row in rows]
    emit(narrow, "table", columns=NARROW_COLUMNS, title=title)


def _destroy(app: App, timeout: float) -> list[RequestRecord]:
    """Destroy the cluster, waiting at most ``timeout`` seconds; the requests
    left then (none when every machine is gone)."""
    click.echo("destroying the cluster...", err=True)
    scaler = scaler_for(app)
    scaler.destroy("demo")
    if not wait_destroyed(app, scaler, "demo", timeout):
        left = scaler.records("demo")
        if left:
            return left
        # Every machine is gone; only the cluster's record was not forgotten in
        # time. Forgotten here, or a later demo in this --dir would refuse it.
        app.store.delete_cluster("demo")
    click.echo("all demo machines removed.", err=True)
    return []
