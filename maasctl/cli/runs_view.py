"""`maasctl runs show RUN --plot` (its chart) and `maasctl runs compare RUN RUN... [--metric M]`.

Charts are drawn with plotext, and only when stdout is a terminal; in a pipe the same series come out as a plain
per-epoch table (stable, diffable text). The figures come from maasctl.training.compare.
"""

from __future__ import annotations

import shutil
import sys
from typing import Annotated, Any

import typer

from maasctl.cli import render
from maasctl.cli._complete import complete_run
from maasctl.cli._options import JsonOpt, state


def _is_tty() -> bool:
    return sys.stdout.isatty()


def chart(lines: list[tuple[str, list[tuple[int, float]]]], *, title: str, color: bool = True,
          width: int | None = None, height: int = 14) -> str:
    """One line chart (x = epoch) with a labelled series per (label, points); returns the text to print."""
    import plotext as plt  # type: ignore[import-untyped]  # plotext ships no type information

    plt.clear_figure()
    cols = width or min(shutil.get_terminal_size((100, 24)).columns, 120)
    plt.plotsize(cols, height)
    plt.theme("pro" if color else "clear")
    for label, points in lines:
        if points:
            plt.plot([e for e, _ in points], [v for _, v in points], label=label, marker="braille")
    plt.title(title)
    plt.xlabel("epoch")
    text = plt.build()
    return text if color else plt.uncolorize(text)


def _table(headers: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Like render.table, but the headers keep their case (they hold run ids)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for r in [headers, *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _fmt(v: Any) -> str:
    """Numbers as everywhere for people (render.number); other values (e.g. a list param) as render.value."""
    return render.value(v)


def plot_run(run: Any) -> None:
    """The train-vs-validation chart of each metric of a run (`runs show --plot`)."""
    from maasctl.training.compare import curves

    found = curves(run)
    if not found:
        render.message(f"run {run.run_id} has no per-epoch history to plot")
        return
    if not _is_tty():
        render.message("--plot: stdout is not a terminal; the per-epoch table above has the same series")
        return
    for c in found:
        print()
        print(chart([(c["metric"], c["train"]), (f"val_{c['metric']}", c["validation"])], title=c["metric"]))


def runs_compare(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN", help="Two or more run ids (see: maasctl runs list).",
                                                 autocompletion=complete_run)],
    metric: Annotated[str | None, typer.Option("--metric", metavar="M",
                                                  help="The metric to overlay: loss, accuracy, val_loss ... "
                                                       "[default: loss, train and validation].")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare runs: curves, final metrics and the params that differ.

    Overlaid curves of one metric, final metrics, the params that differ, data/config digests.
    The chart needs a terminal; in a pipe the series come out as a per-epoch table. --json gives the series.

    Example: maasctl runs compare 20261123-1155 20261123-1201 --metric accuracy
    """
    from maasctl.training.compare import compare
    from maasctl.training.runs import load_run

    store = state(ctx).store
    runs = [load_run(store, r) for r in run_ids]
    doc = compare(runs, metric)
    if json_out:
        render.emit_json(doc)
        return
    _render_compare(doc)


def _render_compare(doc: dict[str, Any]) -> None:
    metric, entries = doc["metric"], doc["runs"]
    keys: list[str] = []
    for e in entries:
        keys += [k for k in e["metrics"] if k not in keys]
    render.table(["run", "epochs", *keys, "config sha256", "data sha256"],
                 [(e["run_id"], e["epochs_run"], *(_fmt(e["metrics"].get(k)) for k in keys),
                   (e["config_sha256"] or render.MISSING)[:12], (e["data_sha256"] or render.MISSING)[:12]) for e in entries])
    print()
    differ = doc["params_differ"]
    if differ:
        _table(["PARAM", *(e["run_id"] for e in entries)],
                     [(k, *(_fmt(v) for v in values)) for k, values in differ.items()])
    else:
        print("params: the same in every run")
    base = metric.removeprefix("val_")
    keys = [metric] if metric.startswith("val_") else [base, f"val_{base}"]
    series = doc["series"]
    print()
    if _is_tty():
        lines = [(f"{run_id[-6:]} {k}", list(zip(s["epoch"], s[k]))) for run_id, s in series.items() for k in keys]
        print(chart(lines, title=metric))
        return
    epochs = sorted({e for s in series.values() for e in s["epoch"]})
    cols = [(run_id, k) for run_id in series for k in keys if series[run_id][k]]
    by_epoch = {(run_id, k): dict(zip(series[run_id]["epoch"], series[run_id][k])) for run_id, k in cols}
    _table(["EPOCH", *(f"{run_id} {k}" for run_id, k in cols)],
                 [(e, *(_fmt(by_epoch[c].get(e)) for c in cols)) for e in epochs])


def attach(runs_app: typer.Typer) -> None:
    """Register `runs compare` on the `runs` group."""
    runs_app.command("compare")(runs_compare)
