"""Package commands: `package` (a run, directory or registered version -> one .maas file) and `inspect`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from maasctl.cli import render
from maasctl.cli._complete import complete_ref_or_file, complete_run_or_ref
from maasctl.cli._options import JsonOpt, name_option, state
from maasctl.errors import InvalidInput


class Compression(str, Enum):
    gzip = "gzip"
    none = "none"


def package(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Training run id, SavedModel directory, or registered NAME@VERSION.",
                                          autocompletion=complete_run_or_ref)],
    out: Annotated[Path | None, typer.Option("--output", "-o", help="Output file or directory "
                                                "[default: ./NAME-VERSION.maas, or ./NAME-DIGEST.maas].")] = None,
    name: Annotated[str | None, name_option("Model name recorded in the package [default: the run's [register] "
                                            "name or config file name, the ref's name, or the directory's name].")]
    = None,
    compression: Annotated[Compression, typer.Option(
        "--compression", help="gzip (default: a standard .tar.gz that tar xzf reads, deflated on every core) "
        "or none (an uncompressed tar). Random-looking float weights shrink only ~10% under gzip, which then "
        "takes ~90% of the packaging time: use none for big models on fast links.")] = Compression.gzip,
    json_out: JsonOpt = False,
) -> None:
    """Write a reproducible, self-describing .maas package.

    The package holds the SavedModel plus maas.json (signatures, metrics, lineage, environment, and every
    file's sha256). The same source always gives a byte-identical file.

    Example: maasctl package iris@3 -o iris.maas
    """
    from maasctl.package.build import build_package

    result = build_package(state(ctx).store, source, out, name=name, compression=compression.value)
    if json_out:
        render.emit_json(result.to_json())
        return
    render.message(f"packaged {result.manifest['name']}: {len(result.manifest['files'])} files, "
                   f"{render.human_size(result.size)}, sha256 {result.sha256}")
    print(result.path)


def inspect(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="Package file (.maas) or registered NAME[@VERSION|@ALIAS].",
                                          autocompletion=complete_ref_or_file)],
    json_out: JsonOpt = False,
) -> None:
    """Show a package's manifest without extracting the model.

    Signatures, metrics and lineage, from a .maas file or a registered version.

    Example: maasctl inspect iris-3.maas
    """
    from maasctl.package.build import inspect_target, refusal

    manifest = inspect_target(state(ctx).store, target)
    if json_out:
        render.emit_json(manifest)
    else:
        _render(manifest)
    problem = refusal(target)
    if problem:
        raise InvalidInput(f"not verified; register would refuse: {problem}")


def _render(manifest: dict[str, Any]) -> None:
    import json

    files = manifest.get("files", [])
    pairs: list[tuple[str, Any]] = [("name", manifest.get("name"))]
    if manifest.get("version") is not None:
        pairs.append(("version", manifest["version"]))
    pairs += [("content_sha256", manifest.get("content_sha256")),
              ("files", f"{len(files)} ({render.human_size(sum(f['size'] for f in files))})")]
    for label, key in (("task", "task"), ("features", "feature_names"), ("classes", "class_names")):
        value = manifest.get(key)
        if value:
            pairs.append((label, ", ".join(map(str, value)) if isinstance(value, list) else value))
    for section in ("metrics", "lineage", "environment"):
        label = "metric" if section == "metrics" else section
        for k, v in (manifest.get(section) or {}).items():
            if k == "data_files" and isinstance(v, list):
                pairs += [(f"{label} data ({f.get('role')})", f"{f.get('path')} sha256 {str(f.get('sha256'))[:12]}")
                          for f in v if isinstance(f, dict)]
            else:
                pairs.append((f"{label} {k}", json.dumps(v) if isinstance(v, dict) else v))
    signing = manifest.get("signing") or {}
    from maasctl.store.signing import short

    pairs.append(("signed", f"yes, by key {short(signing.get('key_fingerprint'))}" if signing.get("signed") else "no"))
    render.key_values(pairs)
    print()
    render.signature_table(manifest.get("signatures", {}))


def attach(app: typer.Typer) -> None:
    """Register this module's commands on the root app."""
    app.command("package")(package)
    app.command("inspect")(inspect)
