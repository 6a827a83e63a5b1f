"""`maasctl predict`: score rows from a file or stdin against a server or in-process."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from maasctl.cli import render
from maasctl.cli._complete import complete_file, complete_ref
from maasctl.cli._options import state
from maasctl.errors import InvalidInput
from maasctl.tensors import DEFAULT_SIGNATURE


def _progress_bar(total_chars: int) -> tuple[Callable[[str, int, int], None], Callable[[], None]]:
    """A rich progress bar on stderr (rows, rows/s, ETA from the share of input consumed)."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rows]} rows"),
                   TextColumn("{task.fields[rate]} rows/s"), TimeRemainingColumn(), transient=True,
                   console=Console(file=sys.stderr))
    tasks: dict[str, Any] = {}
    started: dict[str, float] = {}

    def update(phase: str, rows: int, consumed: int) -> None:
        if phase not in tasks:
            if not tasks:
                bar.start()
            started[phase] = time.monotonic()
            tasks[phase] = bar.add_task("checking" if phase == "check" else "predicting",
                                        total=total_chars or None, rows="0", rate="0")
        rate = rows / max(1e-6, time.monotonic() - started[phase])
        bar.update(tasks[phase], completed=consumed, rows=f"{rows:,}", rate=f"{rate:,.0f}")

    return update, bar.stop


def predict(
    ctx: typer.Context,
    input: Annotated[str, typer.Option("--input", "-i", help="Input file (.json, .jsonl, .csv) or - for stdin.",
                                       autocompletion=complete_file)] = "-",
    model: Annotated[str | None, typer.Option("--model", "-m", help="NAME[@VERSION|@ALIAS]; optional with "
                                                 "--url or one running server serving one model.",
                                                 autocompletion=complete_ref)] = None,
    url: Annotated[str | None, typer.Option("--url", help="A TF-Serving-compatible REST server, "
                                               "e.g. http://127.0.0.1:8501.")] = None,
    local: Annotated[bool, typer.Option("--local", help="Load the model in this process, even if a server "
                                        "serves it.")] = False,
    signature: Annotated[str, typer.Option("--signature", help="Signature to call.")] = DEFAULT_SIGNATURE,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Rows per request.")] = 1024,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json (TF Serving's response body), jsonl, csv "
                                     "or table.")] = "json",
    out_path: Annotated[str | None, typer.Option("--output", "-o", help="Write here instead of stdout.",
                                                    autocompletion=complete_file)] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 60.0,
    token: Annotated[str | None, typer.Option("--token", envvar="MAASCTL_TOKEN", show_envvar=True,
                                                 help="Bearer token for the server.")] = None,
    cacert: Annotated[str | None, typer.Option("--cacert", metavar="FILE",
                                               help="Verify an https:// server against this PEM CA file "
                                               "instead of the system's CA store.",
                                               autocompletion=complete_file)] = None,
    input_format: Annotated[str | None, typer.Option("--input-format", help="json, jsonl or csv "
                                                        "[default: from the extension; sniffed on stdin].")] = None,
) -> None:
    """Predict with a model: rows, records or a TF Serving request body in; predictions out.

    Sends to --url, else to the one running server serving --model, else loads --model in-process. Input is
    checked against the model's signature before anything is sent. Large files stream in --batch-size chunks.

    Example: maasctl predict --input data.csv --model iris@production --format csv
    """
    from maasctl.predict.inputs import open_input
    from maasctl.predict.pipeline import run_predict, select_target
    from maasctl.predict.writers import check_format, make_writer, open_output
    from maasctl.tf.loader import load_version  # TensorFlow itself comes in only if --local loads a model

    store = state(ctx).store
    check_format(fmt)
    if input == "-" and sys.stdin.isatty():
        raise InvalidInput("no input: pass --input FILE, or pipe rows into stdin")
    source = open_input(input, input_format)
    target = None
    ok = False
    try:
        # The output is checked (and FILE.partial created) before connecting or loading TensorFlow, so a bad
        # --output fails in a moment, not after the whole prediction.
        out, finish = open_output(out_path)
        try:
            target = select_target(store, model=model, url=url, local=local, signature=signature, token=token,
                                   timeout=timeout, say=render.message, load=load_version, cacert=cacert)
            writer = make_writer(fmt, out, target.schema)
            progress, stop = _progress_bar(source.size) if sys.stderr.isatty() else (None, lambda: None)
            try:
                run_predict(target, source, writer, batch_size=batch_size, progress=progress, warn=render.message)
                ok = True
            finally:
                stop()
        finally:
            finish(ok)
    finally:
        if target is not None:
            target.close()
        source.close()


def attach(app: typer.Typer) -> None:
    """Register this module's commands on the root app."""
    app.command("predict")(predict)
