"""Registry commands: register, list, show, alias, rm, verify, gc."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maasctl.cli import render
from maasctl.cli._complete import complete_alias, complete_model, complete_source
from maasctl.cli._options import JsonOpt, alias_option, name_option, ref_argument, state
from maasctl.errors import InvalidInput

alias_app = typer.Typer(help="Movable names for versions (NAME@production).", no_args_is_help=True)


def _parse_tags(tags: list[str]) -> dict[str, str]:
    out = {}
    for t in tags:
        key, sep, value = t.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--tag {t!r}: expected KEY=VALUE")
        out[key] = value
    return out


def register(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="SavedModel directory, package file (.maas) or run id.",
                                          autocompletion=complete_source)],
    name: Annotated[str | None, name_option("Model name.")] = None,
    alias: Annotated[list[str], alias_option("Point ALIAS at the version (repeatable).")] = [],  # noqa: B006 - typer copies the default; never mutated
    description: Annotated[str, typer.Option("--description", metavar="TEXT",
                                             help="Free text stored with the version.")] = "",
    tag: Annotated[list[str], typer.Option("--tag", "-t", metavar="KEY=VALUE", help="KEY=VALUE stored with the version (repeatable).")] = [],  # noqa: B006 - typer copies the default; never mutated
    new_version: Annotated[bool, typer.Option("--new-version", help="Create a version even if identical content exists.")] = False,
    features: Annotated[str | None, typer.Option("--features", metavar="A,B,...", help="Feature names of a "
                                                    "SavedModel directory's input columns, in order (predict then "
                                                    "maps CSV columns and record fields by name).")] = None,
    require_signed: Annotated[bool, typer.Option("--require-signed", help="Refuse a source whose signature "
                                                 "(maas.sig) does not verify with a trusted key.")] = False,
    key: Annotated[list[Path], typer.Option("--key", metavar="PUBLIC.pem", dir_okay=False,
                                            help="Trusted public key (repeatable) [default: $MAASCTL_TRUSTED_KEYS].")]
    = [],  # noqa: B006 - typer copies the default; never mutated
    json_out: JsonOpt = False,
) -> None:
    """Register a model as the next immutable version NAME@N.

    Re-registering identical content returns the existing version ("created": false), so CI re-runs are
    idempotent.

    Example: maasctl register ./export --name iris --alias candidate
    """
    from maasctl.registration import register_source

    feature_names = [f.strip() for f in features.split(",")] if features is not None else None
    check = _signature_policy(require_signed, key, source)
    result = register_source(state(ctx).store, source, name, aliases=alias, description=description,
                             tags=_parse_tags(tag), new_version=new_version, feature_names=feature_names,
                             **({"check": check} if check else {}))
    if json_out:
        render.emit_json(result.to_json())
    else:
        if not result.created:
            render.message(f"identical content is already registered as {result.info.ref}")
        print(result.info.ref)


def _signature_policy(require_signed: bool, keys: list[Path], label: str):
    if not require_signed:
        if keys:
            raise InvalidInput("--key is for --require-signed (to check a stored version: maasctl verify REF --key)")
        return None
    from maasctl.store.signing import publish_check, trusted_keys

    trusted = trusted_keys(keys)
    if not trusted:
        raise InvalidInput("--require-signed needs a trusted public key: --key PUBLIC.pem or MAASCTL_TRUSTED_KEYS")
    return publish_check(trusted, label)


def list_(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Show this model's versions.",
                                                  autocompletion=complete_model)] = None,
    json_out: JsonOpt = False,
) -> None:
    """List models, or one model's versions.

    Example: maasctl list iris --json
    """
    store = state(ctx).store
    unknown = store.index_mismatch()
    if unknown:
        from maasctl.store.base import require_local
        from maasctl.store.doctor import mismatch_message
        render.message(f"warning: {mismatch_message(require_local(store, 'doctor'), unknown)}")
    if name is None:
        models = store.list_models()
        if json_out:
            render.emit_json([m.to_json() for m in models])
        elif not models:
            render.message(f"no models in {store.location} (see: maasctl register --help)")
        else:
            render.table(["name", "latest", "versions", "aliases"],
                         [(m.name, m.latest, m.count, ", ".join(f"{a}->{v}" for a, v in m.aliases.items()))
                          for m in models])
        return
    versions = store.list_versions(name)
    if json_out:
        render.emit_json([v.to_json() for v in versions])
    else:
        render.table(["version", "created", "size", "sha256", "aliases"],
                     [(v.version, v.created_at, render.human_size(v.size), v.sha256[:12], ", ".join(v.aliases))
                      for v in versions])


def show(
    ctx: typer.Context,
    ref: Annotated[str, ref_argument()],
    json_out: JsonOpt = False,
) -> None:
    """Everything about one version, including its signatures.

    Example: maasctl show iris@production
    """
    from maasctl.store.signing import bundle_summary, short

    store = state(ctx).store
    info = store.resolve(ref)
    manifest = store.manifest(info)
    signatures = manifest.get("signatures", {})
    signing = bundle_summary(store.signature(info))
    if json_out:
        render.emit_json({**info.to_json(), "signatures": signatures, "files": manifest["files"],
                          "params": manifest.get("params"), "environment": manifest.get("environment"),
                          "signing": {k: signing[k] for k in ("signed", "key_fingerprint")}})
        return
    pairs = [("ref", info.ref), ("aliases", ", ".join(info.aliases) or None), ("created", info.created_at),
             ("sha256", info.sha256), ("size", render.human_size(info.size)), ("path", info.where),
             ("source", info.source or None),
             ("signed", f"yes, by key {short(signing['key_fingerprint'])} (check: maasctl verify {info.ref} --key "
                        "PUBLIC.pem)" if signing["signed"] else "no")]
    for label, key in (("description", None), ("task", "task"), ("features", "feature_names"),
                       ("classes", "class_names")):
        value = info.description if key is None else info.meta.get(key)
        if value:
            pairs.append((label, ", ".join(value) if isinstance(value, list) else value))
    pairs += [(f"tag {k}", v) for k, v in info.tags.items()]
    pairs += [(f"metric {k}", v) for k, v in info.metrics.items()]
    render.key_values(pairs)
    print()
    render.signature_table(signatures)


@alias_app.command("set")
def alias_set(
    ctx: typer.Context,
    ref: Annotated[str, ref_argument("The version to point at: NAME@VERSION (or NAME@ALIAS, NAME).")],
    alias: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias name (not all digits, not 'latest').",
                                         autocompletion=complete_alias)],
    expect_version: Annotated[int | None, typer.Option(
        "--expect-version", metavar="N", help="Move only if ALIAS still points at version N (exit 1 if it "
        "changed underneath).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Point ALIAS at a version (creating or moving it).

    Example: maasctl alias set iris@3 production --expect-version 2
    """
    info, old = state(ctx).store.set_alias(ref, alias, expect_version=expect_version)
    if json_out:
        render.emit_json({"name": info.name, "alias": alias, "version": info.version, "previous": old})
    else:
        moved = f" (was {old})" if old is not None and old != info.version else ""
        print(f"{info.name}@{alias} -> {info.version}{moved}")


@alias_app.command("rm")
def alias_rm(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Model name.", autocompletion=complete_model)],
    alias: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias to remove.", autocompletion=complete_alias)],
    json_out: JsonOpt = False,
) -> None:
    """Remove an alias (the version stays).

    Example: maasctl alias rm iris candidate
    """
    version = state(ctx).store.remove_alias(name, alias)
    if json_out:
        render.emit_json({"name": name, "alias": alias, "removed": True, "previous": version})
    else:
        render.message(f"removed {name}@{alias} (pointed at {version})")


@alias_app.command("list")
def alias_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(metavar="NAME", help="Only this model's aliases.",
                                                  autocompletion=complete_model)] = None,
    json_out: JsonOpt = False,
) -> None:
    """List aliases and the versions they point at.

    Example: maasctl alias list iris
    """
    rows = state(ctx).store.alias_list(name)
    if json_out:
        render.emit_json(rows)
        return
    render.table(["name", "alias", "version"], [(r["name"], r["alias"], r["version"]) for r in rows])


@alias_app.command("history")
def alias_history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Model name.", autocompletion=complete_model)],
    alias: Annotated[str | None, typer.Argument(help="Only this alias.", autocompletion=complete_alias)] = None,
    json_out: JsonOpt = False,
) -> None:
    """The event log of a model (registrations, alias moves, removals), oldest first.

    Example: maasctl alias history iris production
    """
    events = state(ctx).store.history(name, alias)
    if json_out:
        render.emit_json(events)
        return
    render.table(["at", "event", "alias", "version", "from", "to", "by"],
                 [(e["at"], e["event"], e["alias"] or "", e["version"] or "", e["from_version"] or "",
                   e["to_version"] or "", e.get("who") or "") for e in events])


def rm(
    ctx: typer.Context,
    ref: Annotated[str, ref_argument("NAME@VERSION (or NAME@ALIAS).")],
    force: Annotated[bool, typer.Option("--force", help="Also remove aliases pointing at it.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove a version. Refused while an alias points at it, unless --force. Numbers are never reused.

    Example: maasctl rm iris@2
    """
    info = state(ctx).store.remove(ref, force=force)
    if json_out:
        render.emit_json({"ref": info.ref, "name": info.name, "version": info.version, "removed": True,
                          "aliases_removed": info.aliases})
    else:
        render.message(f"removed {info.ref}")


def verify(
    ctx: typer.Context,
    ref: Annotated[str | None, ref_argument("One version; default: every version.")] = None,
    key: Annotated[list[Path], typer.Option("--key", metavar="PUBLIC.pem", dir_okay=False,
                                            help="Also check each version's signature against this public key "
                                            "(repeatable; or $MAASCTL_TRUSTED_KEYS with --signed).")] = [],  # noqa: B006 - typer copies the default; never mutated
    signed: Annotated[bool, typer.Option("--signed", help="Check signatures against $MAASCTL_TRUSTED_KEYS.")]
    = False,
    json_out: JsonOpt = False,
) -> None:
    """Re-hash stored files against their recorded sha256.

    With --key, check signatures too. Exit 1 on any corruption, missing or untrusted signature.

    Example: maasctl verify iris@3 --key release.pub.pem
    """
    store = state(ctx).store
    trusted = None
    if key or signed:
        from maasctl.store.signing import trusted_keys

        trusted = trusted_keys(key)
        if not trusted:
            raise InvalidInput("--signed needs trusted public keys: --key PUBLIC.pem or MAASCTL_TRUSTED_KEYS")
    reports = store.verify(ref)
    if trusted is not None:
        from maasctl.store.signing import signature_problems

        for r in reports:
            r.problems += signature_problems(store, store.resolve(r.ref), trusted)
    bad = [r for r in reports if not r.ok]
    if json_out:
        render.emit_json({"ok": not bad, "checked": len(reports), "versions": [r.to_json() for r in reports]})
    else:
        for r in reports:
            for p in r.problems:
                render.message(f"{r.ref}: {p}")
        render.message(f"verified {len(reports)} version(s): " + (f"{len(bad)} corrupt" if bad else "all intact"))
    if bad:
        raise typer.Exit(1)


def gc(
    ctx: typer.Context,
    keep: Annotated[int | None, typer.Option("--keep", metavar="N", help="Keep the newest N versions of each model "
                                                "(aliased versions are always kept).")] = None,
    runs_older_than: Annotated[float | None, typer.Option(
        "--runs-older-than", metavar="DAYS", help="Also remove training runs older than DAYS that no "
        "registered version came from.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed.")] = False,
    lease: Annotated[float, typer.Option("--lease", metavar="SECONDS", help="s3:// stores: an unfinished upload "
                                         "older than this is abandoned and removed.")] = 3600.0,
    json_out: JsonOpt = False,
) -> None:
    """Remove leftovers of interrupted writes, old versions and runs.

    Also logs of stopped servers; with --keep, old unaliased versions; with --runs-older-than, old unused runs.

    Example: maasctl gc --keep 5 --dry-run
    """
    from maasctl.housekeeping import collect_garbage

    if lease < 0:
        raise InvalidInput(f"--lease cannot be negative (got {lease})")
    report = collect_garbage(state(ctx).store, keep=keep, dry_run=dry_run, runs_older_than=runs_older_than,
                             lease_seconds=lease)
    if json_out:
        render.emit_json(report.to_json())
        return
    verb = "would remove" if dry_run else "removed"
    render.message(f"{verb} {len(report.staging)} staging dir(s), {len(report.orphans)} unregistered "
                   f"version dir(s), {len(report.versions)} old version(s), {len(report.runs)} run(s), "
                   f"{len(report.logs)} server log(s)")
    for v in [*report.versions, *report.runs]:
        print(v)


def doctor(
    ctx: typer.Context,
    rebuild_index: Annotated[bool, typer.Option("--rebuild-index", help="Rebuild index.db from the maas.json beside "
                                                "each version and events.log (the old index is kept as a backup).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what the rebuilt index would hold.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check that the index knows every version directory.

    With --rebuild-index, recreate the index from disk.
    Stop servers' and writers' use of the store while rebuilding. Exit 1 while a mismatch remains.

    Example: maasctl doctor --rebuild-index
    """
    from maasctl.store import doctor as store_doctor
    from maasctl.store.base import require_local

    store = require_local(state(ctx).store, "maasctl doctor")
    if rebuild_index:
        report = store_doctor.rebuild_index(store, dry_run=dry_run)
        if json_out:
            render.emit_json(report.to_json())
        else:
            for s in report.skipped:
                render.message(f"skipped {s}")
            verb = "would hold" if dry_run else "holds"
            render.message(f"rebuilt index {verb} {len(report.versions)} version(s), {len(report.aliases)} alias(es), "
                           f"{report.events} event(s)" + (f"; old index kept as {report.backup}" if report.backup else ""))
        if report.skipped:
            raise typer.Exit(1)
        return
    unknown = store.index_mismatch()
    if json_out:
        render.emit_json({"ok": not unknown, "unknown_version_dirs": unknown})
    else:
        render.message(store_doctor.mismatch_message(store, unknown) if unknown else f"the index {store.db_path} knows every version")
    if unknown:
        raise typer.Exit(1)


def attach(app: typer.Typer) -> None:
    app.command("register")(register)
    app.command("list")(list_)
    app.command("show")(show)
    app.add_typer(alias_app, name="alias")
    app.command("rm")(rm)
    app.command("verify")(verify)
    app.command("gc")(gc)
    app.command("doctor")(doctor)
