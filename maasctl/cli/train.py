"""`maasctl train` and `maasctl runs list|show`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from maasctl.cli import render
from maasctl.cli._complete import complete_run
from maasctl.cli._options import JsonOpt, alias_option, name_option, state
from maasctl.errors import InvalidInput
from maasctl.training.launcher import EVENTS_ENV

if TYPE_CHECKING:
    from maasctl.training.shard import ShardUnreadable

runs_app = typer.Typer(help="Training runs recorded in the store.", no_args_is_help=True)


class PlainReporter:
    """One line per epoch on stderr (logs, CI, pipes)."""

    wants_batches = False

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix  # the role under tf.distribute ("chief: ", "worker 1: ")

    def start(self, epochs: int, steps: int) -> None:
        self.epochs = epochs
        self.t0 = time.perf_counter()

    def epoch_start(self, epoch: int) -> None:
        self.t_epoch = time.perf_counter()

    def batch(self, step: int, logs: dict[str, float]) -> None:
        pass

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        width = len(str(self.epochs))
        render.message(f"{self.prefix}epoch {epoch:>{width}}/{self.epochs}  {render.metrics_line(logs)}  "
                       f"({time.perf_counter() - self.t_epoch:.1f}s)")

    def end(self) -> None:
        pass


class RichReporter:
    """A rich progress bar per epoch with live loss and metrics (stderr is a terminal)."""

    wants_batches = True

    def start(self, epochs: int, steps: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.epochs, self.steps = epochs, steps
        width = len(str(epochs))
        self.progress = Progress(
            TextColumn(f"epoch {{task.fields[epoch]:>{width}}}/{epochs}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[logs]}"),
            console=Console(stderr=True), refresh_per_second=8, transient=True)
        self.progress.start()
        self.task: Any = None

    def epoch_start(self, epoch: int) -> None:
        self.task = self.progress.add_task("", total=self.steps, epoch=epoch, logs="")

    def batch(self, step: int, logs: dict[str, float]) -> None:
        self.progress.update(self.task, completed=step, logs=render.metrics_line(logs))

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        # Finished epochs scroll up as plain lines; only the running epoch has a live bar (any number of epochs).
        elapsed = self.progress.tasks[-1].elapsed or 0.0
        self.progress.remove_task(self.task)
        width = len(str(self.epochs))
        self.progress.console.print(f"epoch {epoch:>{width}}/{self.epochs}  {render.metrics_line(logs)}  ({elapsed:.1f}s)",
                                    highlight=False)

    def end(self) -> None:
        self.progress.stop()


def _reporter(prefix: str) -> Any:
    import os

    if os.environ.get(EVENTS_ENV) == "1":  # a child of `train --workers`
        from maasctl.cli.train_cluster import EventReporter

        return EventReporter()
    return RichReporter() if sys.stderr.isatty() and not prefix else PlainReporter(prefix)


def _summary(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {render.number(v)}" for k, v in metrics.items())


def _report_unreadable(exc: ShardUnreadable, cluster_timeout: float) -> NoReturn:
    """Sharded by file, this worker could not read its own files (a ShardUnreadable): the other workers would
    wait for it until --cluster-timeout, so it joins the cluster to tell them why, then fails. Under --workers
    the launcher sees every worker's error and stops the others: it fails at once."""
    import os

    if os.environ.get(EVENTS_ENV) == "1":
        raise exc
    who = f"{exc.plan.role}: "
    render.message(f"{who}could not read its data: {exc}")
    render.message(f"{who}loading TensorFlow to tell the other workers…")
    from maasctl.tf.shard import report_unreadable

    report_unreadable(exc, cluster_timeout)


def train(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="The training config (TOML); see README, 'Training config reference'.")],
    set_: Annotated[list[str], typer.Option("--set", "-s", metavar="KEY=VALUE",
                                            help="Override a config key (dotted path, TOML value), e.g. "
                                                 "train.epochs=5 or model.layers[0].units=32 (repeatable).")] = [],  # noqa: B006 - typer copies the default; never mutated
    register: Annotated[bool, typer.Option("--register", help="Register the exported model right away as NAME@N "
                                           "(NAME from --name, else the config's [register] name).")] = False,
    name: Annotated[str | None, name_option("Model name to register under (implies --register).")] = None,
    alias: Annotated[list[str], alias_option("Point ALIAS at the registered version (repeatable; implies "
                                             "--register; default: [register] aliases).")] = [],  # noqa: B006 - typer copies the default; never mutated
    workers: Annotated[int | None, typer.Option("--workers", min=1, metavar="N",
                                                help="Try a cluster on this machine: N local worker processes on "
                                                     "loopback ports (generated TF_CONFIG); prints the chief's run "
                                                     "id.")] = None,
    cluster_timeout: Annotated[float, typer.Option("--cluster-timeout", min=1, metavar="SECONDS",
                                                   help="Under multi_worker: how long to wait for the other "
                                                        "workers, and for any one all-reduce.")] = 120.0,
    json_out: JsonOpt = False,
) -> None:
    """Train a Keras model from a TOML config and record the run.

    The run (SavedModel + lineage) is recorded in the store. The config and data are checked before TensorFlow
    loads. Progress goes to stderr; stdout gets the run id
    (and NAME@N when registering), or one JSON document with --json.

    Example: maasctl train iris.toml --set train.epochs=5 --alias candidate
    """
    started = time.time()
    import os

    from maasctl.refs import check_alias, check_name
    from maasctl.training.data import prepare
    from maasctl.training.distribute import resolve
    from maasctl.training.shard import ShardUnreadable

    try:
        cfg, ds = prepare(config, set_, env=None if workers is not None else os.environ)  # a worker: maybe its files only
    except ShardUnreadable as exc:
        _report_unreadable(exc, cluster_timeout)
    if workers is not None:
        from maasctl.cli.train_cluster import train_on_workers

        train_on_workers(ctx, cfg, workers, config=config, set_=set_, cluster_timeout=cluster_timeout,
                         register=register, name=name, alias=alias, json_out=json_out)
        return
    plan = resolve(cfg.train["distribute"], os.environ)  # TF_CONFIG and the mode, checked before TensorFlow
    who = f"{plan.role}: " if plan.cluster is not None else ""
    register = register or name is not None or bool(alias)
    reg_name = name or cfg.register.get("name")
    if register:
        if not reg_name:
            raise InvalidInput(f"{cfg.path}: --register needs a model name: pass --name NAME or set "
                               f"[register] name in the config")
        check_name(reg_name)
        for a in alias:
            check_alias(a)
    split = cfg.data.get("validation_split") or 0
    where = (f", from {cfg.data['validation_path']}" if cfg.data.get("validation_path")
             else f", validation_split {split:g}" if split else "")
    render.message(who + ds.describe(where))
    if plan.cluster is not None:
        render.message(who + ds.reading)
    render.message(who + "loading TensorFlow…")
    from maasctl.tf.train import plan_for, run_training

    plan = plan_for(cfg)
    if plan.mode != "none" or plan.cluster is not None:
        render.message(f"{who}distribute: {plan.mode} ({plan.why})")
    store = state(ctx).store if plan.is_chief else None  # the others write nothing to the store
    reporter: Any = _reporter(who)
    run, result = run_training(store, cfg, ds, reporter, started=started, plan=plan, cluster_timeout=cluster_timeout)
    if run is None:  # not the chief: same final metrics, nothing recorded
        if json_out:
            render.emit_json({"run_id": None, "role": plan.role, "metrics": result.metrics,
                              "epochs_run": result.epochs_run})
        else:
            render.message(f"{who}{_summary(result.metrics)} ({result.train_time_s:.1f}s training; "
                           f"the chief records the run)")
        return
    ref = None
    if register and store is not None:
        from maasctl.registration import register_source

        ref = register_source(store, run.run_id, reg_name, aliases=alias).info.ref
    if json_out:
        render.emit_json({"run_id": run.run_id, "metrics": result.metrics, "model_dir": str(run.model_dir),
                          "run_dir": str(run.path), "epochs_run": result.epochs_run, "ref": ref})
        return
    from maasctl.tf.train import stop_message

    if stop_message(result):
        render.message(stop_message(result))
    epoch = result.extra.get("final_epoch")
    at = f"epoch {epoch}, " if epoch and epoch != result.epochs_run else ""
    render.message(f"{who}run {run.run_id}: {_summary(result.metrics)} ({at}{result.train_time_s:.1f}s training)")
    print(run.run_id)
    if ref:
        render.message(f"registered {ref}")
        print(ref)


@runs_app.command("list")
def runs_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List training runs, oldest first.

    Example: maasctl runs list --json
    """
    from maasctl.training.runs import list_runs

    store = state(ctx).store
    runs = list_runs(store)
    if json_out:
        render.emit_json([{"run_id": r.run_id, "created_at": r.created_at, "task": r.meta.get("task"),
                           "config": (r.meta.get("lineage") or {}).get("config_path"), "metrics": r.meta.get("metrics"),
                           "register_name": r.register_name, "model_dir": str(r.model_dir)} for r in runs])
    elif not runs:
        render.message(f"no runs in {store.location} (see: maasctl train --help)")
    else:
        # fits 100 columns: the primary metric only (all of them: maasctl runs show RUN)
        render.table(["run", "created", "task", "config", "metric"],
                     [(r.run_id, r.created_at[:16].replace("T", " "), r.meta.get("task"),
                       Path((r.meta.get("lineage") or {}).get("config_path") or "-").name,
                       _summary(dict([r.primary_metric])) if r.primary_metric else None)
                      for r in runs])


@runs_app.command("rm")
def runs_rm(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN...", help="Run ids (or unique prefixes).",
                                                 autocompletion=complete_run)],
    json_out: JsonOpt = False,
) -> None:
    """Remove training runs.

    Versions registered from them stay: they are copies.

    Example: maasctl runs rm 20261123-115500-ab12cd
    """
    from maasctl.training.runs import remove_runs

    removed = remove_runs(state(ctx).store, run_ids)
    if json_out:
        render.emit_json({"removed": removed})
        return
    for run_id in removed:
        render.message(f"removed run {run_id}")


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="A run id (see: maasctl runs list).",
                                          autocompletion=complete_run)],
    plot: Annotated[bool, typer.Option("--plot", help="Draw the curves (train vs validation) of each metric "
                                       "in the terminal.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Everything recorded about a run.

    Metrics, per-epoch history, features, classes, lineage.

    Example: maasctl runs show 20261123-115500-ab12cd --plot
    """
    from maasctl.training.runs import load_run

    run = load_run(state(ctx).store, run_id)
    if json_out:
        render.emit_json(run.to_json())
        return
    rec, lin = run.record, run.meta.get("lineage") or {}
    pairs: list[tuple[str, Any]] = [
        ("run", run.run_id), ("created", run.created_at), ("task", rec.get("task")),
        ("model", run.model_dir), ("config", lin.get("config_path")), ("config sha256", lin.get("config_sha256")),
        ("overrides", " ".join(lin.get("overrides") or [])),
        ("features", ", ".join(rec.get("feature_names") or [])),
    ]
    if rec.get("class_names"):
        pairs.append(("classes", ", ".join(rec["class_names"])))
    for f in lin.get("data_files") or []:
        pairs.append((f"data ({f['role']})", f"{f['path']} sha256 {f['sha256'][:12]}"))
    pairs += [("git commit", lin.get("git_commit")), ("seed", lin.get("seed")),
              ("epochs run", rec.get("epochs_run")), ("stopped early", rec.get("stopped_early", False)),
              ("best epoch", rec.get("best_epoch")), ("wall time", f"{rec.get('wall_time_s', 0):.1f}s"),
              ("register name", run.register_name)]
    pairs += [(f"metric {k}", render.number(v)) for k, v in (run.meta.get("metrics") or {}).items()]
    env = run.meta.get("environment") or {}
    pairs.append(("environment", ", ".join(f"{k} {v}" for k, v in env.items() if k != "platform")))
    render.key_values(pairs)
    history = rec.get("history") or []
    if history:
        print()
        keys = [k for k in history[0] if k != "epoch"]
        render.table(["epoch", *keys], [(h["epoch"], *(render.number(h.get(k)) for k in keys))
                                         for h in history])
    if plot:
        from maasctl.cli.runs_view import plot_run

        plot_run(run)


def attach(app: typer.Typer) -> None:
    """Register this module's commands on the root app."""
    app.command("train")(train)
    app.add_typer(runs_app, name="runs")
