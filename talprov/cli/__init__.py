"""The ``talprov`` command.

Exit codes: 0 success, 1 the work failed or a name names nothing (an unknown
request, cluster, set, bare-metal machine or instance given on the command line),
2 bad usage or invalid input (one line naming the file and field, never a
traceback), 130/143 interrupted by SIGINT/SIGTERM, 141 (128 + SIGPIPE, said
nothing) when stdout's reader has gone (`talprov ... | head -1`).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from talprov import __version__
from talprov.cli.app import (
    EXIT_FAILED,
    App,
    fail,
    handle_errors,
    pass_app,
    setup_logging,
)
from talprov.cli.autoscaler import autoscaler
from talprov.cli.baremetal import baremetal
from talprov.cli.cluster import COMMANDS as CLUSTER_COMMANDS
from talprov.cli.config import config_group
from talprov.cli.demo import demo
from talprov.cli.image import image
from talprov.cli.machine import machine, reconcile
from talprov.cli.output import (
    EXIT_BROKEN_PIPE,
    closed_stdout,
    emit,
    lose_stdout,
    output_option,
    stdout_lost,
)
from talprov.cli.serve import serve
from talprov.cli.sets import request_set
from talprov.cli.statusline import STATUS_LINE
from talprov.cli.store import store
from talprov.errors import ConfigError, MissingExtra
from talprov.logs import FORMATS as LOG_FORMATS
from talprov.registry import extra_providing, installed_types, load_type
from talprov.stopping import exit_interrupted, stop_on_signals


class _Root(click.Group):
    """The root command: an interruption of a command (its clean-up included) ends
    here, before click, which would print a blank line for the terminal's ``^C``
    also into a log or a pipe. So does a closed stdout (`talprov ... | head -1`),
    which click would end with exit 1: quietly, with EXIT_BROKEN_PIPE (141)."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        # --help and --version print while the arguments are parsed.
        with _ending_on_closed_stdout():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _ending_on_closed_stdout():
                try:
                    result = super().invoke(ctx)
                finally:
                    # The close callbacks (App.close) run here rather than after the
                    # return, so that an interruption during them ends here too.
                    ctx.close()
        except KeyboardInterrupt as exc:
            exit_interrupted(exc, line_open=STATUS_LINE.close())
        # A command that carried on without its stdout (the demo cleans up) ends so.
        return EXIT_BROKEN_PIPE if stdout_lost() and result in (None, 0) else result


@contextlib.contextmanager
def _ending_on_closed_stdout() -> Iterator[None]:
    """Turn a write to a stdout whose reader has gone into click's Exit with
    EXIT_BROKEN_PIPE, saying nothing, as a program SIGPIPE ends does."""
    try:
        yield
    except OSError as exc:
        if not closed_stdout(exc):
            raise
        lose_stdout()
        raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="TALPROV_CONFIG", show_envvar=True,
              metavar="FILE",
              help="Config file (default: ./talprov.yaml, then "
              "$XDG_CONFIG_HOME/talprov/config.yaml).")
@click.option("--store", "store_url", envvar="TALPROV_STORE", show_envvar=True, metavar="URL",
              help="State store URL (default: the config's store, else SQLite under "
              "$XDG_STATE_HOME).")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), envvar="TALPROV_LOG_FORMAT",
              show_envvar=True,
              help="Log lines as plain text (default) or one JSON object per line.")
@click.version_option(__version__, prog_name="talprov")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, store_url: str | None, verbose: int,
        log_format: str | None) -> None:
    """talprov: Talos Linux machines on AWS, Proxmox VE, vSphere, OpenStack and bare metal.

    Record MachineRequests (`talprov machine create -f`), let the reconciler make
    them real (`talprov reconcile`, or --wait), scale clusters from a spec.

    Shell completion: eval "$(_TALPROV_COMPLETE=bash_source talprov)" (zsh_source,
    fish_source for other shells).
    """
    setup_logging(verbose, log_format or "plain")
    app = App(config_path=config_path, store_url=store_url, verbose=verbose,
              log_format=log_format)
    ctx.obj = app
    ctx.call_on_close(app.close)


@cli.command()
@click.option("--health", is_flag=True,
              help="Also ask each configured instance whether it answers.")
@output_option
@pass_app
@handle_errors
def providers(app: App, health: bool, output: str) -> None:
    """List provider types and configured provider instances.

    A type whose extra is missing is listed as "not installed" with its pip command.

    With --health, every instance is asked and has its row (a missing extra or an
    unset secret reference included); exit 1 when any of them is not healthy.
    With -o json|yaml, each instance's row then also has "ok" (a boolean) and
    "error" (why not, or null).
    """
    rows: list[dict[str, object]] = [
        {"kind": "type", "name": t.name, "type": t.name, "detail": t.unusable or t.target}
        for t in installed_types()
    ]
    failed = False
    for name, block in sorted(app.config.config.providers.items()):
        row: dict[str, object] = {"kind": "instance", "name": name, "type": block.type,
                                  "detail": f"concurrency={block.concurrency}"}
        if health:
            row["detail"], ok = _instance_health(app, name)
            # For scripts, as `config check -o json` rows and the API's health.ok say it.
            row["ok"] = ok
            row["error"] = None if ok else str(row["detail"]).partition(": ")[2]
            failed = failed or not ok
        rows.append(row)
    emit(rows, output, columns=("kind", "name", "type", "detail"))
    if failed:
        sys.exit(EXIT_FAILED)


def _instance_health(app: App, name: str) -> tuple[str, bool]:
    """(what to show, whether it is healthy) for instance ``name``. Every instance
    is asked, whatever the others answered: a missing extra or an unset secret
    reference is this instance's row, not the end of the command."""
    try:
        result = app.provider(name).health()
    except MissingExtra as exc:
        return f"not installed: {exc.message}", False
    except ConfigError as exc:  # an unset secret reference, settings its type refuses
        return f"unusable: {exc}", False  # names the field
    except ModuleNotFoundError as exc:  # an SDK imported only when first used
        return f"not installed: {missing_module_message(exc)}", False
    return ("ok" if result.ok else f"unhealthy: {result.message}"), result.ok


@cli.command()
@click.argument("type_name", metavar="TYPE")
@click.option("--what", type=click.Choice(["provider_data", "config"]), default="provider_data",
              show_default=True, help="Which model's JSON Schema to print.")
@handle_errors
def schema(type_name: str, what: str) -> None:
    """Print the JSON Schema of a provider type's provider_data (or config)."""
    cls = load_type(type_name, where="TYPE")
    model = cls.data_model if what == "provider_data" else cls.config_model
    click.echo(json.dumps(model.model_json_schema(), indent=2))


cli.add_command(image)
cli.add_command(config_group)
cli.add_command(demo)
cli.add_command(baremetal)
cli.add_command(machine)
cli.add_command(reconcile)
for _command in CLUSTER_COMMANDS:
    cli.add_command(_command)
cli.add_command(serve)
cli.add_command(request_set)
cli.add_command(store)
cli.add_command(autoscaler)


def missing_module_message(exc: ModuleNotFoundError) -> str:
    """One line for an optional module that is missing, naming the extra to install."""
    module = exc.name or "?"
    extra = extra_providing(module)
    if extra is None:
        return f"Python module {module!r} is not installed"
    return (f"this needs {module!r}, which is not installed; install its extra, "
            f"e.g. pip install 'talprov[{extra}]'")


def main() -> None:
    """Console-script entry point: runs the command and exits with its code.

    Not click's standalone mode, which turns Ctrl-C into "Aborted!" and exit 1:
    an interrupted command exits 130 (128 + SIGINT), as shells expect, and one
    stopped by SIGTERM (a service manager, a CI timeout) ends the same clean way
    (leases given back) with 143 (128 + SIGTERM).
    """
    stop_on_signals()
    try:
        result = cli.main(prog_name="talprov", standalone_mode=False)
    except ModuleNotFoundError as exc:
        # A command reached an optional dependency that is not installed: name
        # the extra instead of showing a traceback.
        fail(missing_module_message(exc))
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        exit_interrupted(exc)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    try:
        # What is still buffered, now rather than at exit, where a reader gone
        # would cost a traceback-like "Exception ignored" and exit 120.
        sys.stdout.flush()
    except OSError as exc:
        if not closed_stdout(exc):
            raise
        lose_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    # A command that finished returns None; ctx.exit(n), --help and --version give n.
    sys.exit(result if type(result) is int else 0)


__all__ = ["cli", "emit", "main"]
