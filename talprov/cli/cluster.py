"""``talprov plan|apply|status|destroy|scale``: clusters from a spec file (their
scaler and waits: :mod:`talprov.cli.cluster_loop`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import click

from talprov.cli.app import (
    EXIT_FAILED,
    App,
    UnknownName,
    carried_on_by,
    confirm_or_exit,
    fail,
    handle_errors,
    known_instance,
    pass_app,
    say,
)
from talprov.cli.cluster_loop import converge, scaler_for, wait_destroyed
from talprov.cli.counts import (
    LARGE_GROWTH,
    CountCommand,
    CountType,
    checked_count,
    confirm_control_plane_shrink,
    confirm_removed_sets,
    confirm_size_change,
)
from talprov.cli.invoked import talprov_line
from talprov.cli.numbers import WAIT_SECONDS
from talprov.cli.output import emit, output_option, watch, watch_option
from talprov.cli.planview import plan_view, show_plan, status_view
from talprov.cli.waiting import WAIT_TIMEOUT_HELP, interruptible
from talprov.errors import ConfigError
from talprov.providers.labels import LABEL_CLUSTER
from talprov.providers.types import Stage
from talprov.registry import check_request, validate_provider_data
from talprov.scaler.actions import Plan
from talprov.scaler.apply import Scaler
from talprov.scaler.clusterstate import UNREADABLE_REMEDY, ClusterState
from talprov.scaler.configtext import merge_patch
from talprov.scaler.models import CONTROL_PLANE_SET, ClusterSpec
from talprov.scaler.spec import load_spec_file
from talprov.scaler.templates import template
from talprov.words import counted

#: -f of plan and apply.
SPEC_FILE_HELP = ("Cluster spec (YAML stream); - reads it from stdin, its relative "
                  "file: references then from the current directory.")

SET_COLUMNS = ("name", "desired", "provisioned", "provisioning", "failed", "unreadable",
               "outdated", "deleting", "notes")


RESEAL_HELP = ("When the recorded cluster was sealed with another TALPROV_STORE_KEY, "
               "replace its record with this file sealed by this key (its autoscaled "
               "sizes and backoff are lost; its requests made under the old key stay "
               "unreadable until deleted with `talprov machine delete`). Without it, "
               "such a cluster is refused: a wrong key in the environment must not "
               "overwrite the record.")


def _document(spec: ClusterSpec, what: Literal["class", "set"], name: str) -> str:
    """The document label of class or set ``name`` of a spec read from a file.
    Both callers (plan, apply) pass the spec :func:`load_spec_file` returned, which
    remembers every class and set: only a spec read back from the store has none.
    Raises ``ValueError`` for such a spec (a bug; checked also under ``python -O``)."""
    label = spec.document(what, name)
    if label is None:
        raise ValueError(f"{what} {name!r}: the spec was not read from a file, so its "
                         "documents are unknown")
    return label


def _check_providers(app: App, spec: ClusterSpec) -> None:
    """Check every MachineClass against its provider before anything is recorded.

    The provider instance must be configured and the class's provider_data (and
    each failure domain's merge of it) must pass the provider's own model, so a
    misspelt field fails here with exit 2 instead of as failed machines later.
    Raises ``ConfigError`` naming the file, the document and the field, in the
    form of every other spec error (``cluster.yaml: document 2 (MachineClass
    "a"): provider_data.size: ...``).
    """
    for name, machine_class in spec.machine_classes.items():
        where = _document(spec, "class", name)
        provider = app.provider(known_instance(app, machine_class.provider,
                                               where=f"{where}: provider"))
        validate_provider_data(provider, dict(machine_class.provider_data),
                               where=f"{where}: provider_data")
        for index, domain in enumerate(machine_class.failure_domains):
            merged = merge_patch(machine_class.provider_data, domain.provider_data)
            validate_provider_data(
                provider, merged, where=f"{where}: failureDomains[{index}].provider_data")
    # The provider's own pre-flight, on the request each set's machines are made of:
    # a field of the request that comes from the class is blamed on its document.
    for set_name, machine_set in spec.sets.items():
        machine_class = spec.machine_classes[machine_set.machine_class]
        provider = app.provider(machine_class.provider)
        set_where = _document(spec, "set", set_name)
        class_where = _document(spec, "class", machine_set.machine_class)
        for domain_name in spec.domains(set_name):
            try:
                check_request(provider, template(spec, set_name, domain_name), where="")
            except ConfigError as exc:
                field = exc.where.removeprefix(": ")
                owner = class_where if field.split(".")[0].split("[")[0] in \
                    type(machine_class).model_fields else set_where
                raise ConfigError(f"{owner}: {field}" if field else owner,
                                  exc.message) from None


@click.command("plan")
@click.option("-f", "--file", "path", required=True, type=click.Path(path_type=Path),
              help=SPEC_FILE_HELP)
@click.option("--reseal", is_flag=True, default=False, help=RESEAL_HELP)
@output_option
@pass_app
@handle_errors
def plan_cmd(app: App, path: Path, reseal: bool, output: str) -> None:
    """Preview what `apply` would do now, and why. Changes nothing.

    \b
    Examples:
      talprov plan -f cluster.yaml
      talprov plan -f cluster.yaml -o json
      cat cluster.yaml | talprov plan -f -
    """
    spec = load_spec_file(path)
    scaler = scaler_for(app, spec.name)
    # What apply would answer: a plan of machines it will not create says nothing.
    scaler.refuse_if_destroying(spec.name)
    state = scaler.replaced_state(spec.name, reseal=reseal)
    preview = ClusterState(spec=spec)
    if state is not None:
        # What apply would record: autoscaled sets keep their recorded sizes.
        preview = ClusterState(spec=spec.keeping_autoscaled_sizes(state.spec))
        preview.backoff, preview.orphans_seen = state.backoff, state.orphans_seen
    _check_providers(app, spec)
    first, later, complete = scaler.preview_steps(preview)
    show_plan(first, output, later, complete)


@click.command()
@click.option("-f", "--file", "path", required=True, type=click.Path(path_type=Path),
              help=SPEC_FILE_HELP)
@click.option("--wait/--no-wait", default=False,
              help="Converge here (scaler + reconciler) until the cluster matches the spec.")
@click.option("--timeout", default=3600.0, show_default=True, type=WAIT_SECONDS,
              help=WAIT_TIMEOUT_HELP)
@click.option("--yes", "-y", is_flag=True, default=False,
              help="Do not ask before shrinking a control plane or removing a worker "
                   "set the spec leaves out (required then when stdin is not a "
                   "terminal).")
@click.option("--reseal", is_flag=True, default=False, help=RESEAL_HELP)
@output_option
@pass_app
@handle_errors
def apply(app: App, path: Path, wait: bool, timeout: float, yes: bool, reseal: bool,
          output: str) -> None:
    """Record a cluster spec and converge towards it.

    Without --wait, one scaler pass records the first creates/deletes and
    `talprov reconcile` (or `talprov serve`) carries on. With --wait, a machine
    that fails is said once with its error and replaced after a backoff, and the
    wait goes on: exit 1 when --timeout runs out first. A smaller control plane
    than recorded asks first, as `scale` does, and so does a spec that leaves out
    a worker set with machines (all of them are deleted at once; a renamed set is
    a new set). A cluster being destroyed is
    refused (exit 1): wait until the destroy has finished, then apply again.

    \b
    Examples:
      talprov apply -f cluster.yaml
      talprov apply -f cluster.yaml --wait --timeout 1200
      talprov apply -f cluster.yaml --yes -o json
    """
    spec = load_spec_file(path)
    scaler = scaler_for(app, spec.name)
    # Refused before any question or check, as plan refuses it; record() refuses
    # again under the lease.
    scaler.refuse_if_destroying(spec.name)
    _check_providers(app, spec)
    # Read for the questions below; the warning comes with the record it replaces.
    recorded = scaler.replaced_state(spec.name, reseal=reseal, warn=False)
    if recorded is not None and CONTROL_PLANE_SET in recorded.spec.sets \
            and CONTROL_PLANE_SET in spec.sets:
        confirm_control_plane_shrink(f"{spec.name}/{CONTROL_PLANE_SET}",
                                     recorded.spec.sets[CONTROL_PLANE_SET].size,
                                     spec.sets[CONTROL_PLANE_SET].size, yes)
    if recorded is not None:
        confirm_removed_sets(recorded.spec, spec, yes)
    with scaler.editing(spec.name):
        state = scaler.record(spec, reseal=reseal)
    # The first pass, --wait or not: its actions are what apply recorded. The spec
    # is recorded already: an interruption says so (the pass lists machines, which a
    # cloud that does not answer can hold up).
    with interruptible(f"cluster {spec.name}"):
        steps = scaler.run_pass_steps(spec.name)
    if not wait:
        if steps is None:
            say(f"{spec.name}: recorded; another worker is running its pass and "
                "carries on from the new spec")
            return
        result, later, complete = steps
        show_plan(result, output, later, complete)
        return
    ok = converge(app, spec.name, timeout)
    final = scaler.preview(scaler.state(spec.name) or state)
    if output != "table":
        # The keys apply prints without --wait (actions and later steps: the first
        # pass's, none when another worker ran it), with the sets and orphans as
        # the wait left them.
        first, later, complete = steps or (Plan(spec.name, ()), [], True)
        left = final.to_dict()
        emit({**plan_view(first, later, complete), "sets": left["sets"],
              "orphans": left["orphans"], "converged": ok}, output)
    else:
        emit([s.to_dict() for s in final.sets], output, columns=SET_COLUMNS, title=spec.name)
    if not ok:
        fail(f"{spec.name}: not converged after {timeout:.0f}s", EXIT_FAILED)


#: The columns of `talprov status` without a name: one row per recorded cluster.
CLUSTER_COLUMNS = ("cluster", "sets", "provisioned", "unreadable", "requests", "state")


def cluster_rows(scaler: Scaler) -> list[dict[str, Any]]:
    """One row per recorded cluster, from the store alone (no cloud call): its sets'
    desired sizes, its requests (provisioned and unreadable of all not gone) and
    whether it is recorded, being destroyed or unreadable with this key. Never
    raises for a cluster sealed with another key: that is its state.

    The counts are by stage, in SQL, and agree with ``status NAME``: a request
    sealed under another key (after ``apply --reseal``) is unreadable, never
    provisioned, told apart by the key id stored beside its secrets
    (:meth:`Store.count_requests_by_label`); a request being deleted counts in
    ``requests`` only, as ``status NAME`` counts it as deleting."""
    rows: list[dict[str, Any]] = []
    # Every cluster's requests counted in one query, none of them unsealed.
    by_cluster: dict[str, dict[tuple[Stage, bool], int]] = {}
    for (cluster, stage, unreadable), count in scaler.store.count_requests_by_label(
            LABEL_CLUSTER).items():
        by_cluster.setdefault(cluster, {})[stage, unreadable] = count
    for name in scaler.store.list_clusters():
        state = scaler.recorded_state(name)
        if state is None:
            continue  # forgotten meanwhile
        counts = by_cluster.get(name, {})
        rows.append({
            "cluster": name,
            "sets": {set_name: machine_set.size
                     for set_name, machine_set in sorted(state.spec.sets.items())},
            "provisioned": counts.get((Stage.PROVISIONED, False), 0),
            "unreadable": sum(n for (stage, unreadable), n in counts.items()
                              if unreadable and stage is not Stage.DEPROVISIONING),
            "requests": sum(counts.values()),
            "state": ("unreadable" if state.unreadable
                      else "destroying" if state.destroying else "recorded"),
        })
    return rows


@click.command()
@click.argument("name", required=False)
@output_option
@watch_option
@pass_app
@handle_errors
def status(app: App, name: str | None, output: str, watch_seconds: float | None) -> None:
    """Show each set's desired and observed machines. Exit 1 when unknown or
    unreadable with this TALPROV_STORE_KEY.

    With NAME, -o json|yaml gives the cluster, its "state" (recorded or
    destroying) and its sets; a cluster being destroyed shows what is left of each
    set. With --watch, the cluster gone (its destroy finished) is said once, with
    state destroyed, and the watch ends (exit 0).

    Without NAME: one row per recorded cluster (its sets' sizes, provisioned of its
    requests, and whether it is recorded, being destroyed or unreadable with this
    TALPROV_STORE_KEY), read from the store without asking any cloud; exit 1 when
    one is unreadable, as `status NAME` exits for it. With --watch the others stay
    on screen and the unreadable ones are named on stderr when they change. Requests
    sealed under another key count as unreadable, never provisioned, as in `status
    NAME`.

    \b
    Examples:
      talprov status
      talprov status web
      talprov status web --watch 5
      talprov status web -o json
    """
    scaler = scaler_for(app, name)
    told: list[list[str]] = []  # the unreadable clusters a --watch last warned about
    seen: list[str] = []  # cluster NAME, once a render found it recorded

    def render() -> bool | None:
        if name is None:
            rows = cluster_rows(scaler)
            emit(rows, output, columns=CLUSTER_COLUMNS, title="clusters")
            unreadable = [row["cluster"] for row in rows if row["state"] == "unreadable"]
            said = (f"cluster {', '.join(unreadable)}: recorded under another "
                    f"TALPROV_STORE_KEY; {UNREADABLE_REMEDY}")
            if unreadable and watch_seconds is None:
                # The exit code `status <name>` gives each of them.
                fail(said, EXIT_FAILED)
            if unreadable and told[-1:] != [unreadable]:
                # A watch goes on showing the others; it says so once per change.
                say(f"talprov: {said}", level=logging.WARNING)
            told[:] = [unreadable]
            return None
        state = scaler.state(name)
        if state is None:
            if not seen:
                fail(f"cluster {name} is not recorded", EXIT_FAILED)
            # Gone while watched: only a finished destroy forgets a cluster. Said
            # once, and the watch stops (QA: it went on redrawing "(none)").
            if output != "table":
                emit(status_view(Plan(name, ()), "destroyed"), output)
            else:
                click.echo(f"{name}: destroyed (no longer recorded)")
            return True
        seen[:] = [name]
        # A cluster being destroyed shows what is left of each set (desired 0).
        result = scaler.preview(state)
        if output != "table":
            emit(status_view(result, "destroying" if state.destroying else "recorded"),
                 output)
            return None
        emit([s.to_dict() for s in result.sets], output, columns=SET_COLUMNS,
             title=f"{name}: being destroyed" if state.destroying else name)
        return None

    watch(render, watch_seconds, fmt=output)


@click.command()
@click.argument("name")
@click.option("--wait/--no-wait", default=False, help="Run until every machine is gone.")
@click.option("--timeout", default=1800.0, show_default=True, type=WAIT_SECONDS,
              help=WAIT_TIMEOUT_HELP)
@click.option("--yes", "-y", is_flag=True,
              help="Do not ask; required when stdin is not a terminal (scripts).")
@output_option
@pass_app
@handle_errors
def destroy(app: App, name: str, wait: bool, timeout: float, yes: bool, output: str) -> None:
    """Delete every machine of a cluster, then forget the cluster.

    Asks first on a terminal; scripts pass --yes (without it, exit 2). With -o
    json|yaml, prints the cluster, its "state" (destroying, or destroyed after
    --wait) and the ids of the requests it is deleting.

    \b
    Examples:
      talprov destroy web
      talprov destroy web --yes --wait
    """
    scaler = scaler_for(app, name)
    if scaler.recorded_state(name) is None:
        fail(f"cluster {name} is not recorded", EXIT_FAILED)
    deleting = sorted(r.request.id for r in scaler.records(name))
    count = len(deleting)
    confirm_or_exit(f"Delete all {counted(count, 'machine')} of cluster {name}?", yes)
    with scaler.editing(name):
        destroying = scaler.destroy(name)
    if not destroying:
        fail(f"cluster {name} is not recorded", EXIT_FAILED)
    scaler.run_pass(name)
    destroyed = wait and wait_destroyed(app, scaler, name, timeout)
    if not wait:
        say(f"{name}: destroying; `{talprov_line('reconcile')}` carries it out")
    elif destroyed:
        say(f"{name}: destroyed")
    if output != "table":
        emit({"cluster": name, "state": "destroyed" if destroyed else "destroying",
              "requests": deleting}, output)
    if wait and not destroyed:
        fail(f"{name}: machines still being removed after {timeout:.0f}s", EXIT_FAILED)


@click.command(cls=CountCommand)
@click.argument("name")
@click.argument("set_name", metavar="SET")
@click.argument("count", type=CountType())
@click.option("--yes", "-y", is_flag=True, default=False,
              help=f"Do not ask before adding more than {LARGE_GROWTH} machines or shrinking "
                   "a control plane (required then when stdin is not a terminal).")
@output_option
@pass_app
@handle_errors
def scale(app: App, name: str, set_name: str, count: int, yes: bool, output: str) -> None:
    """Change one set's size (0..1000) in the recorded spec (apply a file to undo).

    Shows the creates and deletes it recorded, as `apply` does (-o json|yaml for
    scripts). A control plane keeps at least 1 machine, and shrinking it asks first
    (etcd tolerates fewer failed members). Exit 1 when the cluster or set is unknown
    or the cluster is being destroyed.

    \b
    Examples:
      talprov scale web workers 5
      talprov scale web control-planes 3 --yes
    """
    checked_count(count)
    scaler = scaler_for(app, name)
    if set_name == CONTROL_PLANE_SET and count < 1:
        # The rule a spec file's ControlPlane follows; `destroy` removes a cluster.
        raise ConfigError("COUNT", "a control plane needs >= 1 machine")
    # Refused before any question; record() refuses again under the lease.
    scaler.refuse_if_destroying(name)
    recorded = scaler.state(name)
    if recorded is not None and set_name in recorded.spec.sets:
        # Asked before the lease is taken: nobody waits for an answer holding it.
        current = recorded.spec.sets[set_name].size
        confirm_size_change(f"{name}/{set_name}", current, count, yes)
        if set_name == CONTROL_PLANE_SET:
            confirm_control_plane_shrink(f"{name}/{set_name}", current, count, yes)
    # Read, check and write under the cluster's lease: a pass running meanwhile
    # would otherwise write its older copy of the record over the new size.
    with scaler.editing(name):
        state = scaler.state(name)
        if state is None:
            fail(f"cluster {name} is not recorded", EXIT_FAILED)
        if set_name not in state.spec.sets:
            known = ", ".join(state.spec.sets)
            raise UnknownName("SET", f"cluster {name} has no set {set_name!r} (sets: {known})")
        bounds = state.spec.sets[set_name].autoscaling
        if bounds is not None and not bounds.min <= count <= bounds.max:
            raise ConfigError("COUNT", f"{name}/{set_name} is autoscaled: the size must be "
                                       f"within {bounds.min}..{bounds.max}")
        scaler.record(state.spec.scaled(set_name, count), keep_autoscaled_sizes=False)
    steps = scaler.run_pass_steps(name)
    if steps is not None:  # None: another worker's pass has it, from the new size
        result, later, complete = steps
        show_plan(result, output, later, complete)
    # The pass only recorded creates and deletes: the reconciler makes and removes
    # the machines (QA: the line gave no hint of that).
    say(f"{name}/{set_name}: size {count}; {carried_on_by()}")


COMMANDS = (plan_cmd, apply, status, destroy, scale)
