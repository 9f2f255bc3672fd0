"""``talprov baremetal``: the inventory commands and the boot server.

The provider instance comes from talprov.yaml (``--provider NAME``, or the only
bare-metal instance there) or from a YAML file holding just its block
(``--file``), which is handy on a boot host without a full installation.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click
import yaml
from pydantic import TypeAdapter, ValidationError

from talprov.baremetal.config import BareMetalConfig
from talprov.baremetal.inventory import BmcInfo, Inventory, InventoryError, UnknownMachine
from talprov.baremetal.records import (
    InventoryMachine,
    canonical_uuid,
    check_machine_name,
    normalize_mac,
)
from talprov.cli.app import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UnknownName, setup_logging
from talprov.cli.invoked import talprov_line
from talprov.cli.numbers import MACHINE_CPUS, MACHINE_DISK_GB, MACHINE_MEMORY_MIB
from talprov.config import check_resolved_urls
from talprov.errors import (
    ConfigError,
    describe_problem,
    read_user_file,
    refuse_lone_surrogates,
    validate,
    yaml_error,
)
from talprov.providers.labels import Labels
from talprov.registry import COMMON_INSTANCE_KEYS
from talprov.secrets import require_reference
from talprov.stopping import ignore_stop_signals


def load_block(app: Any, provider: str | None, file: str | None) -> tuple[BareMetalConfig, str]:
    """The instance's validated config and the factory URL. Raises ``ConfigError``."""
    factory_url = "https://factory.talos.dev"
    if file is not None:
        where = file
        try:
            raw = yaml.safe_load(read_user_file(Path(file), file, "the file")) or {}
        except yaml.YAMLError as exc:
            raise yaml_error(exc, file) from None
        refuse_lone_surrogates(raw, file, sep=".")  # as validate names its fields below
    else:
        loaded = app.config
        factory_url = loaded.factory_url()
        names = [n for n, b in loaded.config.providers.items() if b.type == "baremetal"]
        if provider is None:
            if len(names) != 1:
                if not names:
                    source = loaded.path or "no config file found"
                    raise ConfigError("--provider", f"no bare-metal instance is configured "
                                                    f"({source}); add one of type baremetal "
                                                    "or pass --file BLOCK.yaml")
                raise ConfigError("--provider", "several bare-metal instances are configured; "
                                                f"name one of {', '.join(sorted(names))}")
            provider = names[0]
        elif provider not in names:
            block = loaded.config.providers.get(provider)
            if block is None:
                raise UnknownName("--provider", f"no provider instance {provider!r} is "
                                                f"configured (bare-metal ones: "
                                                f"{', '.join(sorted(names)) or 'none'})")
            raise ConfigError("--provider", f"{provider} is a {block.type} instance, not "
                                            "baremetal")
        where = f"providers.{provider}"
        raw = loaded.provider_block(provider)
    if not isinstance(raw, dict):
        raise ConfigError(where, "expected a mapping")
    from talprov.secrets import resolve_tree

    body = {k: v for k, v in resolve_tree(raw, where=where).items()
            if k not in COMMON_INSTANCE_KEYS}
    # A --file block is no instance of talprov.yaml: its urls were never checked.
    check_resolved_urls({**body, "type": "baremetal"}, where)
    return validate(BareMetalConfig, body, where), factory_url


def proxy_credentials(app: Any, file: str | None,
                      config: BareMetalConfig) -> tuple[tuple[str, str] | None, bool | str]:
    """The Image Factory's (user, password) and TLS setting from talprov.yaml, for
    the boot server's proxy (``proxy_factory``); none for a ``--file`` block or
    without the proxy. Raises ``ConfigError`` naming the setting that does not
    resolve (an unset password): an authenticated factory serves nothing without it."""
    if file is not None or not config.proxy_factory:
        return None, True
    factory = app.config.image_factory()
    return factory.auth(), factory.verify()


class _Ctx:
    def __init__(self, app: Any, provider: str | None, file: str | None) -> None:
        self.app, self.provider, self.file = app, provider, file

    def config(self) -> tuple[BareMetalConfig, str]:
        return load_block(self.app, self.provider, self.file)

    def inventory(self) -> Inventory:
        return Inventory(self.config()[0].inventory)


BMC_HELP = ("ipmi://HOST[:PORT], redfish://HOST[:PORT] or redfish+http://HOST[:PORT] "
            "(a lab BMC without TLS).")


def _global_verbosity() -> int:
    return 1 if logging.getLogger().getEffectiveLevel() <= logging.INFO else 0


def _known(inventory: Inventory, name: str) -> InventoryMachine:
    """The machine called ``name``; raises ``UnknownMachine`` (exit 1) otherwise."""
    machine = inventory.get(name)
    if machine is None:
        raise UnknownMachine(f"no machine {name!r}")
    return machine


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"talprov: error: {message}", err=True)
    raise SystemExit(code)


def _refuse(exc: Exception) -> NoReturn:
    """Exit with one line for ``exc``: 1 when it names an unknown machine or
    instance (as for every unknown name), 2 for any other refusal."""
    _fail(str(exc), EXIT_FAILED if isinstance(exc, UnknownMachine | UnknownName) else EXIT_USAGE)


#: The schemes --bmc takes; a bare host is refused rather than guessed (IPMI or Redfish?).
BMC_SCHEMES = ("ipmi", "redfish", "redfish+http")


def _without_credentials(text: str) -> str:
    """``text`` with anything up to its last "@" dropped: a user and password
    typed into --bmc are never shown back."""
    return text.rpartition("@")[2]


def _bmc(url: str, user: str, password_ref: str, insecure: bool) -> BmcInfo:
    try:
        password_ref = require_reference(password_ref, where="--bmc-password")
    except ConfigError as exc:
        _refuse(exc)
    if "://" not in url:
        host = _without_credentials(url)
        _fail(f"--bmc: {host!r} has no scheme; write ipmi://{host} for IPMI or "
              f"redfish://{host} for Redfish (redfish+http:// without TLS)")
    parts = urlsplit(url)
    kind = parts.scheme
    if kind not in BMC_SCHEMES:
        _fail(f"--bmc: {kind!r} is not a BMC scheme talprov knows; use ipmi://, redfish:// "
              "or redfish+http://")
    if parts.username is not None or parts.password is not None:
        # A password here would sit in clear text in the inventory and in `list`,
        # which is why --bmc-password takes a reference only; never echo it.
        _fail("--bmc: give the user with --bmc-user and the password as a reference "
              "with --bmc-password, not inside the URL")
    try:
        port = parts.port
    except ValueError:
        _fail("--bmc: the port must be a number from 1 to 65535")
    address = parts.hostname or ""
    if not address:
        _fail(f"--bmc: {url!r} names no host")
    if kind == "redfish+http":
        kind, address = "redfish", f"http://{parts.netloc}"
    return BmcInfo(kind=kind, address=address, port=port, username=user,
                   password_ref=password_ref, verify_tls=not insecure)


def _checked(option: str, check: Callable[[str], str], value: str) -> str:
    """``check(value)``, or exit 2 with its ``ValueError`` after ``option: `` (nothing
    before it when ``option`` is "": the message names what it is about)."""
    try:
        return check(value)
    except ValueError as exc:
        _fail(f"{option}: {exc}" if option else str(exc))


_LABELS: TypeAdapter[dict[str, str]] = TypeAdapter(Labels)


def _label_map(items: tuple[str, ...]) -> dict[str, str]:
    """``--label KEY=VALUE`` options as a mapping; exit 2 naming the label for one
    without '=' (it was dropped without a word) or that breaks the rule of
    :data:`Labels` (Kubernetes' label rule, which selectors are checked by too)."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--label {key}: expected KEY=VALUE")
        labels[key] = value
    try:
        return _LABELS.validate_python(labels)
    except ValidationError as exc:
        error = exc.errors()[0]
        _path, message = describe_problem([error])
        where = error["loc"]
        if not where:  # the mapping as a whole: too many labels
            _fail(f"--label: {message}")
        # describe_problem names a key's problem as such; a value's it does not.
        part = "" if where[-1] == "[key]" else "value "
        _fail(f"--label {where[0]}: {part}{message}")


@click.group()
@click.option("-p", "--provider", help="Bare-metal provider instance in talprov.yaml.")
@click.option("--file", "file", type=click.Path(dir_okay=False),
              help="YAML file with the instance's config block (instead of talprov.yaml).")
@click.pass_context
def baremetal(ctx: click.Context, provider: str | None, file: str | None) -> None:
    """Bare-metal inventory and the PXE boot server."""
    ctx.obj = _Ctx(ctx.obj, provider, file)


@baremetal.command()
@click.option("-v", "--verbose", is_flag=True, help="Log every request (paths with tokens masked).")
@click.pass_obj
def serve(obj: _Ctx, verbose: bool) -> None:
    """Run the boot server (HTTP; TFTP and DHCP when configured) until stopped."""
    from talprov.baremetal.boot.server import BootServer

    if verbose:
        # The global handler is installed by `talprov` at WARNING; basicConfig
        # would do nothing with it there, so raise the level of that handler.
        setup_logging(max(1, _global_verbosity()))

    try:
        config, factory_url = obj.config()
        config.check_boot_files()
        auth, verify = proxy_credentials(obj.app, obj.file, config)
    except ConfigError as exc:
        _refuse(exc)
        return
    server = BootServer(config, factory_url, factory_auth=auth, factory_verify=verify)
    done = threading.Event()
    stops: list[int] = []

    def noted(signum: int, _frame: object) -> None:
        stops.append(signum)
        done.set()

    signal.signal(signal.SIGTERM, noted)
    signal.signal(signal.SIGINT, noted)
    try:
        server.start()
    except OSError as exc:
        _fail(f"cannot start the boot server: {exc}")
    click.echo(f"boot server listening; machines use {config.boot_url}", err=True)
    try:
        done.wait()
    finally:
        # The first signal counts, as in `talprov serve`: another one must not
        # break off the boot server's stop.
        ignore_stop_signals()
        server.stop()
    # A long-running service like `serve`: SIGTERM (a service manager's stop)
    # exits 0, Ctrl-C 130, both after saying so.
    click.echo("stopped", err=True)
    if stops and stops[0] == signal.SIGINT:
        raise SystemExit(EXIT_INTERRUPTED)


@baremetal.command()
@click.argument("name")
@click.option("--uuid", help="SMBIOS UUID as 8-4-4-4-12 hex digits (iPXE ${uuid}); "
              "stored in lower case, as Talos reports it.")
@click.option("--mac", "macs", multiple=True, help="MAC address of a PXE NIC (repeatable).")
@click.option("--bmc", "bmc_url", required=True, help=BMC_HELP)
@click.option("--bmc-user", required=True)
@click.option("--bmc-password", "password_ref", required=True,
              help="Secret reference such as '${env:BMC_PASS}' or '${file:/run/secrets/bmc}'.")
@click.option("--insecure", is_flag=True, help="Redfish: skip TLS verification.")
@click.option("--label", "labels", multiple=True, help="KEY=VALUE (repeatable).")
@click.option("--cpus", type=MACHINE_CPUS, help="Logical CPUs (1 to 65536).")
@click.option("--memory-mib", type=MACHINE_MEMORY_MIB, help="Memory, MiB (1 to 2^32).")
@click.option("--disk-gb", type=MACHINE_DISK_GB, help="Disk size, GB (1 to 10^9).")
@click.pass_obj
def add(obj: _Ctx, name: str, uuid: str | None, macs: tuple[str, ...], bmc_url: str,
        bmc_user: str, password_ref: str, insecure: bool, labels: tuple[str, ...],
        cpus: int | None, memory_mib: int | None, disk_gb: int | None) -> None:
    """Enrol a machine (or adopt a discovered one with the same UUID/MAC) as available.

    NAME follows the rule of request ids: lowercase letters, digits and '-', at
    most 63 characters.
    """
    if not uuid and not macs:
        _fail("give --uuid or --mac so the boot server can recognise the machine")
    _checked("", check_machine_name, name)
    uuid = _checked("--uuid", canonical_uuid, uuid) if uuid else None
    macs = tuple(_checked("--mac", normalize_mac, mac) for mac in macs)
    label_map = _label_map(labels)
    try:
        obj.inventory().add(name, uuid=uuid, macs=macs,
                            bmc=_bmc(bmc_url, bmc_user, password_ref, insecure),
                            labels=label_map, cpus=cpus, memory_mib=memory_mib, disk_gb=disk_gb)
    except (InventoryError, ValueError, ConfigError) as exc:
        _refuse(exc)
    click.echo(f"added {name}")


@baremetal.command(name="list")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
@click.pass_obj
def list_machines(obj: _Ctx, output: str) -> None:
    """Show every machine with its state (no secrets).

    A machine held by a request that failed stays allocated until that request
    is deleted (`talprov machine delete ID`); the note column says so.
    """
    from talprov.cli.output import emit

    try:
        rows = [m.public_view() for m in obj.inventory().machines()]
    except ConfigError as exc:
        _refuse(exc)
        return
    failed, gone = _request_troubles(obj, {str(r["request"]) for r in rows if r["request"]})
    for row in rows:
        request, machine = row["request"], row["name"]
        row["note"] = (f"request failed: `{talprov_line(f'machine delete {request}')}` frees it"
                       if request in failed else
                       f"request {request} is gone (forgotten): "
                       f"`{talprov_line(f'baremetal release {machine}')}` frees it, not wiped"
                       if request in gone else
                       f"cordoned: {row['cordon_reason']}; "
                       f"`{talprov_line(f'baremetal accept {machine}')}` once checked"
                       if row["cordon_reason"] else "")
    emit(rows, output,
         columns=["name", "state", "request", "uuid", "macs", "bmc", "labels", "note"])


def _request_troubles(obj: _Ctx, request_ids: set[str]) -> tuple[set[str], set[str]]:
    """Which of ``request_ids`` failed and which the store no longer has (forgotten);
    both empty with --file or without a readable store."""
    if not request_ids or obj.file is not None:
        return set(), set()
    from talprov.providers.types import Stage
    from talprov.store.errors import StoreError

    try:
        records = obj.app.store.list_requests(ids=request_ids)
    except (StoreError, ConfigError):
        return set(), set()
    known = {r.request.id for r in records}
    return {r.request.id for r in records if r.stage == Stage.FAILED}, request_ids - known


@baremetal.command(name="set")
@click.argument("name")
@click.option("--bmc", "bmc_url", help=BMC_HELP)
@click.option("--bmc-user")
@click.option("--bmc-password", "password_ref",
              help="Secret reference such as '${env:BMC_PASS}' or '${file:/run/secrets/bmc}'.")
@click.option("--insecure/--verify-tls", default=None, help="Redfish: TLS verification.")
@click.pass_obj
def set_(obj: _Ctx, name: str, bmc_url: str | None, bmc_user: str | None,
         password_ref: str | None, insecure: bool | None) -> None:
    """Change a machine's BMC details in place (any state; a held machine keeps its request).

    Without any option there is nothing to change: exit 2. Details equal to the
    stored ones change nothing and say so (exit 0).
    """
    if bmc_url is None and bmc_user is None and password_ref is None and insecure is None:
        _fail("nothing to change: give --bmc, --bmc-user, --bmc-password, --insecure or "
              "--verify-tls")
    try:
        inventory = obj.inventory()
        old = _known(inventory, name).bmc
        if bmc_url is None and not old.address:
            _fail(f"{name} has no BMC address yet; give it one with --bmc")
        bmc = _bmc(bmc_url or old.url(), bmc_user if bmc_user is not None else old.username,
                   password_ref if password_ref is not None else old.password_ref,
                   (not old.verify_tls) if insecure is None else insecure)
        if bmc == old:
            click.echo(f"the BMC of {name} already has these details; nothing changed")
            return
        inventory.update_bmc(name, bmc)
    except (InventoryError, ConfigError) as exc:
        _refuse(exc)
    click.echo(f"updated the BMC of {name}")


@baremetal.command()
@click.option("--event", "events", multiple=True,
              help="Only these events, e.g. config-refused (repeatable).")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
@click.pass_obj
def audit(obj: _Ctx, events: tuple[str, ...], output: str) -> None:
    """Show the boot server's audit log: config fetches, refusals, wipe reports.

    An --event that names no known event is refused (exit 2), listing them.
    """
    from datetime import UTC, datetime

    from talprov.baremetal.records import AUDIT_EVENTS
    from talprov.cli.output import emit

    try:
        entries = obj.inventory().audit()
    except ConfigError as exc:
        _refuse(exc)
        return
    recorded = {e.event for e in entries}
    unknown = [e for e in events
               if e not in AUDIT_EVENTS and e not in recorded and not e.startswith("report-")]
    if unknown:
        _fail(f"--event: unknown event {unknown[0]!r}; known: {', '.join(AUDIT_EVENTS)}, "
              "report-<event> (what a machine reports)")
    rows = [{"at": datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "event": e.event, "machine": e.machine, "uuid": e.uuid, "mac": e.mac,
             "remote": e.remote, "detail": e.detail}
            for e in entries if not events or e.event in events]
    emit(rows, output, columns=["at", "event", "machine", "uuid", "remote", "detail"])


def _simple(action: str) -> Any:
    @click.argument("name")
    @click.pass_obj
    def command(obj: _Ctx, name: str) -> None:
        try:
            getattr(obj.inventory(), action)(name)
        except (InventoryError, ConfigError) as exc:
            _refuse(exc)
        click.echo(f"{action}: {name}")

    return command


@baremetal.command(name="accept")
@click.argument("name")
@click.pass_obj
def accept(obj: _Ctx, name: str) -> None:
    """Make a discovered machine available, or uncordon one.

    A machine with no BMC address is accepted with a warning: talprov cannot power
    it, so no request takes it until it has one; give it one with `talprov
    baremetal set NAME --bmc URL --bmc-user U --bmc-password REF`.
    """
    inventory = obj.inventory()
    try:
        inventory.accept(name)
    except (InventoryError, ConfigError) as exc:
        _refuse(exc)
    click.echo(f"accept: {name}")
    accepted = inventory.get(name)
    if accepted is not None and not accepted.bmc.address:
        click.echo(f"warning: {name} has no BMC address: no request takes it until it "
                   f"has one; set one with `{talprov_line(f'baremetal set {name}')} --bmc URL "
                   "--bmc-user U --bmc-password REF`", err=True)
@baremetal.command(name="release")
@click.argument("name")
@click.pass_obj
def release(obj: _Ctx, name: str) -> None:
    """Free a machine whose request was forgotten (`talprov machine forget`).

    Forgetting a request calls no provider, so its machine is neither powered
    off nor wiped: it stays held until this command. The machine comes back
    cordoned, since its disk may still hold that cluster's Talos and secrets;
    wipe it, then `talprov baremetal accept NAME`. Refused (exit 2) while the
    request still exists: `talprov machine delete ID` wipes and frees it.
    """
    from talprov.store.errors import StoreError

    if obj.file is not None:
        _fail("release needs the request store to see the request is gone: run it "
              "without --file")
    try:
        inventory = obj.inventory()
        holder = _known(inventory, name).request_id
        if holder is None:
            raise InventoryError(f"machine {name!r} is not held by any request")
        if obj.app.store.get_request(holder) is not None:
            delete = talprov_line(f"machine delete {holder}")
            raise InventoryError(f"machine {name!r} is held by request {holder}, which "
                                 f"exists: `{delete}` wipes and frees it")
        inventory.release_unwiped(name, holder, detail=f"request {holder} was forgotten")
    except (InventoryError, ConfigError, StoreError) as exc:
        _refuse(exc)
    click.echo(f"released {name} from forgotten request {holder}; cordoned, as it was not "
               f"wiped: wipe its disk, then `{talprov_line(f'baremetal accept {name}')}`")


baremetal.command(name="cordon", help="Keep a machine from new allocations.")(_simple("cordon"))
baremetal.command(name="remove", help="Forget a machine that no request holds.")(
    _simple("remove"))


if __name__ == "__main__":
    baremetal()
