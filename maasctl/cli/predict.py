"""`maasctl predict`: score rows from a file or stdin against a server or in-process."""

from __future__ import annotations

import io
import sys
from typing import Annotated

import typer

from maasctl.cli import render
from maasctl.cli._complete import complete_file, complete_ref
from maasctl.cli._options import choice_option, state, token_option
from maasctl.errors import InvalidInput
from maasctl.tensors import DEFAULT_SIGNATURE

# the library's maasctl.predict.writers.OUTPUT_FORMATS and predict.schema.FORMATS, spelled out so that start-up
# does not import NumPy (tests/test_cli_help.py keeps them equal)
OUTPUT_FORMATS = ("json", "jsonl", "csv", "table")
INPUT_FORMATS = ("json", "jsonl", "csv")


def predict(
    ctx: typer.Context,
    input: Annotated[str, typer.Option("--input", "-i", metavar="FILE", autocompletion=complete_file,
                                       help="Input file (.json, .jsonl, .csv) or - for stdin.")] = "-",
    model: Annotated[str | None, typer.Option("--model", "-m", metavar="REF", autocompletion=complete_ref,
                                              help="NAME[@VERSION|@ALIAS]; optional with --url or one running "
                                              "server serving one model.")] = None,
    url: Annotated[str | None, typer.Option("--url", help="A TF-Serving-compatible REST server, "
                                               "e.g. http://127.0.0.1:8501.")] = None,
    grpc_address: Annotated[str | None, typer.Option("--grpc", metavar="HOST:PORT", help="A TF Serving gRPC API, e.g. "
                                                        "127.0.0.1:8500 (binary tensors; needs --model; TLS with "
                                                        "--cacert or grpcs://).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Load the model in this process, even if a server "
                                        "serves it.")] = False,
    signature: Annotated[str, typer.Option("--signature", metavar="NAME", help="Signature to call.")]
    = DEFAULT_SIGNATURE,
    batch_size: Annotated[int, typer.Option("--rows-per-request", "-b", min=1, help="Rows sent in one request "
                                            "(the server may merge requests into bigger model calls).")] = 1024,
    old_batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, hidden=True,
                                                       help="Old name of --rows-per-request.")] = None,
    fmt: Annotated[str | None, choice_option("--format", "-f", choices=OUTPUT_FORMATS,
                                             help="json (TF Serving's response body), jsonl, csv or table "
                                             "[default: from --output's extension, else json].")] = None,
    out_path: Annotated[str | None, typer.Option("--output", "-o", metavar="FILE", autocompletion=complete_file,
                                                 help="Write here instead of stdout.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 60.0,
    token: Annotated[str | None, token_option("Bearer token for the server.")] = None,
    cacert: Annotated[str | None, typer.Option("--cacert", metavar="FILE",
                                               help="Verify an https:// (or gRPC TLS) server against this PEM "
                                               "CA file instead of the system's CA store.",
                                               autocompletion=complete_file)] = None,
    input_format: Annotated[str | None, choice_option("--input-format", choices=INPUT_FORMATS,
                                                      help="Input format [default: from the extension; "
                                                      "sniffed on stdin].")] = None,
    keep: Annotated[list[str], typer.Option("--keep", metavar="COL,...", help="Copy these input columns (ids) to "
                                            "the output; other extra columns are ignored with a warning.")] = [],  # noqa: B006 - typer copies the default; never mutated
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document: model, version, rows, output "
                                        "(the --output path) or predictions.")] = False,
) -> None:
    """Predict with a model: rows or records in, predictions out.

    Input: CSV rows, JSON records or a TF Serving request body. Sends to --url (or --grpc), else to the one
    running server serving --model (over gRPC when it serves gRPC), else loads --model in-process. Input is
    checked against the model's signature before anything is sent. Large files stream in --rows-per-request
    chunks.

    Example: maasctl predict -i data.csv -m iris@production -f csv
    """
    from maasctl.cli.progress import RowsProgress
    from maasctl.predict.inputs import open_input
    from maasctl.predict.pipeline import run_predict, select_target
    from maasctl.predict.writers import make_writer, open_output, output_format
    from maasctl.tf.loader import load_version  # TensorFlow itself comes in only if --local loads a model

    store = state(ctx).store
    if old_batch_size is not None:
        batch_size = old_batch_size
    fmt = output_format(fmt, out_path)
    keep = [c.strip() for item in keep for c in item.split(",") if c.strip()]
    if json_ and out_path is None and fmt != "json":
        raise InvalidInput(f"--json without --output puts the predictions in the document; --format {fmt} "
                           f"needs --output FILE")
    if input == "-" and sys.stdin.isatty():
        raise InvalidInput("no input: pass --input FILE, or pipe rows into stdin")
    source = open_input(input, input_format)
    target = None
    ok = False
    try:
        # The output is checked (and FILE.partial created) before connecting or loading TensorFlow, so a bad
        # --output fails in a moment, not after the whole prediction.
        out, finish = open_output(out_path)
        captured = io.StringIO() if json_ and out_path is None else None  # predictions go into the --json document
        if captured is not None:
            out = captured
        try:
            target = select_target(store, model=model, url=url, local=local, signature=signature, token=token,
                                   timeout=timeout, say=render.message, load=load_version, cacert=cacert,
                                   grpc=grpc_address)
            bar = RowsProgress(source.size) if sys.stderr.isatty() else None
            writer = make_writer(fmt, bar.guard(out) if bar else out, target.schema, keep)
            try:
                summary = run_predict(target, source, writer, batch_size=batch_size,
                                      progress=bar.update if bar else None, warn=render.message, keep=keep)
                ok = True
            finally:
                if bar:
                    bar.stop()
        finally:
            finish(ok)
        if json_:
            render.emit_json(summary.to_json(out_path, captured.getvalue() if captured is not None else None))
    finally:
        if target is not None:
            target.close()
        source.close()


def attach(app: typer.Typer) -> None:
    """Register this module's commands on the root app."""
    app.command("predict")(predict)
