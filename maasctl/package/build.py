"""Building packages from store versions, runs and directories; registering and inspecting them."""

from __future__ import annotations

import contextlib
import gzip
import os
import platform
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maasctl import __version__
from maasctl.errors import InvalidInput, NotFound, OperationFailed
from maasctl.package.archive import (
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    GZIP_HEADER,
    MODEL_DIR,
    PACKAGE_SUFFIX,
    Limits,
    crc32_combine,
    head_length,
    head_tar_len,
    open_package,
    raw_head,
    read_package_manifest,
    stored_blocks,
    write_body,
)
from maasctl.refs import check_alias, check_name, parse_ref
from maasctl.store import ModelStore, RegisterResult
from maasctl.store import manifest as mf
from maasctl.store.hashing import FileEntry, hash_file, walk_files


@dataclass
class PackageResult:
    path: Path
    sha256: str
    size: int
    manifest: dict[str, Any] = field(repr=False)
    compression: str = DEFAULT_COMPRESSION

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "size": self.size, "name": self.manifest["name"],
                "content_sha256": self.manifest["content_sha256"], "files": len(self.manifest["files"]),
                "compression": self.compression}


def current_environment() -> dict[str, Any]:
    """TensorFlow, Python and maasctl versions, without importing TensorFlow."""
    from importlib import metadata

    tf_version = None
    for dist in ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"):
        try:
            tf_version = metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            continue
    return {"tensorflow": tf_version, "python": platform.python_version(), "maasctl": __version__}


# -- building ------------------------------------------------------------------------------------------

@dataclass
class _Source:
    model_dir: Path
    name: str
    meta: dict[str, Any]
    label: str  # how error messages name the source
    version: int | None = None  # for refs: names the default output file
    expected: list[FileEntry] | None = None  # for refs: the digests recorded at registration
    notes: dict[str, Any] = field(default_factory=dict)  # description and tags, carried to the next store
    bundle: bytes | None = None  # for refs: the version's signature, wherever its store keeps it


def build_package(store: ModelStore, source: str | Path, out_path: str | Path | None = None, name: str | None = None,
                  compression: str = DEFAULT_COMPRESSION) -> PackageResult:
    """Package a run id, a SavedModel directory or a registered ref into one `.maas` file.

    The file appears under its final name only when complete (written beside it, then renamed).
    """
    if compression not in COMPRESSIONS:
        raise InvalidInput(f"unknown compression {compression!r} (use one of: {', '.join(COMPRESSIONS)})")
    if name is not None:
        check_name(name)
    with contextlib.ExitStack() as opened:  # a registered version stays readable (cached) while packaging
        src = _resolve_source(store, str(source), name, opened)
        return _build(src, out_path, compression)


def _build(src: _Source, out_path: str | Path | None, compression: str) -> PackageResult:
    from maasctl.store.savedmodel import read_signatures

    signatures = read_signatures(src.model_dir)
    files, dirs = walk_files(src.model_dir, skip=mf.RESERVED)
    from maasctl.store.signing import bundle_for_package

    bundle = bundle_for_package(src.model_dir, src.bundle)
    if bundle is not None:  # the signature travels in the manifest, outside the hashed files
        src.notes["signature_bundle"] = bundle
    if src.expected is not None:
        _check_file_set(src, files)
    sizes = {rel: (src.model_dir / rel).stat().st_size for rel in files}
    meta = dict(src.meta)
    meta.setdefault("environment", current_environment())
    placeholder = [FileEntry(rel, sizes[rel], "0" * 64) for rel in files]
    manifest_len = len(mf.dumps(mf.build_manifest(src.name, placeholder, signatures, meta, **src.notes)))
    head_len = head_length(manifest_len, compression)

    final: Path | None = None  # None: the default name, known once the content digest is
    out_dir = Path.cwd()
    if out_path is not None:
        target = Path(out_path)
        if target.is_dir():
            out_dir = target
        else:
            out_dir, final = target.parent, target
            if not out_dir.is_dir():
                raise InvalidInput(f"{target}: the output directory {out_dir} does not exist")
    tmp = out_dir / f".maas-{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(b"\0" * head_len)  # the hole the manifest fills once every digest is known
            entries, body_crc, body_len = write_body(f, src.model_dir, files, dirs, sizes, compression,
                                                      tar_offset=head_tar_len(manifest_len))
            manifest = mf.build_manifest(src.name, entries, signatures, meta, **src.notes)
            if src.expected is not None:
                _check_digests(src, entries)
            data = mf.dumps(manifest)
            plain_head = raw_head(data)
            head = plain_head if compression == "none" else GZIP_HEADER + stored_blocks(plain_head)
            if len(data) != manifest_len or len(head) != head_len:  # cannot happen: digests are fixed-width
                raise OperationFailed("internal error: manifest length changed while packaging")
            if compression == "gzip":  # the trailer covers head + body: combine the two CRCs
                crc = crc32_combine(zlib.crc32(plain_head), body_crc, body_len)
                f.write(struct.pack("<II", crc, (len(plain_head) + body_len) & 0xFFFFFFFF))
            f.seek(0)
            f.write(head)
            f.flush()
            os.fsync(f.fileno())
        digest = hash_file(tmp)
        sha, size = digest.sha256, digest.size
        if final is None:
            final = out_dir / _default_filename(src, manifest)
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError):  # unreadable model file, full disk...: say which file, no traceback
            raise OperationFailed(f"cannot package {src.label}: {exc.filename or tmp}: {exc.strerror or exc}") from None
        raise
    return PackageResult(final, sha, size, manifest, compression)


def _default_filename(src: _Source, manifest: dict[str, Any]) -> str:
    tag = str(src.version) if src.version is not None else manifest["content_sha256"][:12]
    return f"{src.name}-{tag}{PACKAGE_SUFFIX}"


def _resolve_source(store: ModelStore, source: str, name: str | None, opened: contextlib.ExitStack) -> _Source:
    path = Path(source)
    if path.is_dir():
        return _dir_source(path, name)
    if path.is_file():
        raise InvalidInput(f"{source}: is a file; SOURCE must be a run id, a SavedModel directory or NAME@VERSION "
                           f"(to look inside a package: maasctl inspect {source})")
    if "/" in source or os.sep in source or source.startswith("."):
        raise NotFound(f"{source}: no such directory")
    if _is_run_ref(store, source):
        return _run_source(store, source, name)
    try:
        ref = parse_ref(source)
    except InvalidInput:
        raise NotFound(f"{source}: no such directory, run id or registered model "
                       f"(see: maasctl list, maasctl runs list)") from None
    try:
        info = store.resolve(ref)
    except NotFound as exc:
        raise NotFound(f"{source}: not a directory or run id, and {exc}") from None
    stored = store.manifest(info)
    if stored.get("content_sha256") != info.sha256:
        raise OperationFailed(f"{info.ref}: {mf.MANIFEST_NAME} does not match the registry "
                              f"(run: maasctl verify {info.ref})")
    # digests are checked while packaging (_check_digests), so a local version is not hashed twice
    model_dir = opened.enter_context(store.open_version(info, verify=False))
    return _Source(model_dir, name or info.name, mf.model_meta(stored), info.ref, info.version, mf.file_entries(stored),
                   _notes(stored.get("description"), stored.get("tags")), store.signature(info))


def _is_run_ref(store: ModelStore, source: str) -> bool:
    try:
        from maasctl.training.runs import is_run_ref
    except ImportError:
        return "@" not in source and (store.runs_dir / source).is_dir()
    return is_run_ref(store, source)


def _dir_source(path: Path, name: str | None) -> _Source:
    if name is None:
        name = path.resolve().name
        try:
            check_name(name)
        except InvalidInput:
            raise InvalidInput(f"{path}: the directory name {name!r} is not a valid model name; "
                               f"pass --name NAME") from None
    return _Source(path, name, {}, str(path))


def _run_source(store: ModelStore, run_id: str, name: str | None) -> _Source:
    from maasctl.training.runs import load_run
    run = load_run(store, run_id)
    name = run.default_name(name)
    check_name(name)
    meta = {k: v for k, v in (run.meta or {}).items() if k in mf.META_KEYS and v is not None}
    reg = (meta.get("params") or {}).get("register") or {}
    return _Source(Path(run.model_dir), name, meta, f"run {run.run_id}",
                   notes=_notes(reg.get("description"), reg.get("tags")))


def _notes(description: Any, tags: Any) -> dict[str, Any]:
    """The free-text description and tags a package carries (only when set, so plain packages stay lean)."""
    notes: dict[str, Any] = {}
    if isinstance(description, str) and description:
        notes["description"] = description
    if isinstance(tags, dict) and tags:
        notes["tags"] = {str(k): str(v) for k, v in tags.items()}
    return notes


def _check_file_set(src: _Source, files: list[str]) -> None:
    want = {f.path for f in src.expected or []}
    have = set(files)
    if want - have:
        rel = min(want - have)
        raise OperationFailed(f"{src.label}: stored file {rel} is missing (run: maasctl verify {src.label})")
    if have - want:
        rel = min(have - want)
        raise OperationFailed(f"{src.label}: unexpected file {rel} in the stored version "
                              f"(run: maasctl verify {src.label})")


def _check_digests(src: _Source, entries: list[FileEntry]) -> None:
    want = {f.path: f for f in src.expected or []}
    for e in entries:
        exp = want[e.path]
        if (e.size, e.sha256) != (exp.size, exp.sha256):
            raise OperationFailed(f"{src.label}: stored file {e.path} does not match its recorded sha256; "
                                  f"refusing to package a damaged version (run: maasctl verify {src.label})")



def _package_aliases(path: Path, manifest: dict[str, Any]) -> list[str]:
    params: dict[str, Any] = manifest["params"] if isinstance(manifest.get("params"), dict) else {}
    reg: dict[str, Any] = params["register"] if isinstance(params.get("register"), dict) else {}
    aliases = reg.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise InvalidInput(f"{path}: manifest params.register.aliases must be a list of alias names")
    for a in aliases:
        try:
            check_alias(a)
        except InvalidInput as exc:
            raise InvalidInput(f"{path}: manifest params.register.aliases: {exc}") from None
    return list(aliases)


def register_package(store: ModelStore, path: str | Path, name: str | None = None, *,
                     aliases: list[str] | tuple[str, ...] = (), description: str = "",
                     tags: dict[str, str] | None = None, meta: dict[str, Any] | None = None,
                     source_label: str | None = None, new_version: bool = False,
                     check: Any = None) -> RegisterResult:
    """Verify a package entry by entry while extracting it into staging, then publish it as NAME@N.

    Nothing enters the store unless every check passed; the registry keeps the manifest's metadata.
    """
    path = Path(path)
    limits = Limits.from_env()
    if name is not None:
        check_name(name)
    for a in aliases:
        check_alias(a)
    root_existed = store.root.exists()
    staging_existed = store.staging_root.exists()
    try:
        with open_package(path, limits) as reader:
            manifest = reader.manifest
            if name is None:
                name = manifest["name"]
                try:
                    check_name(name)
                except InvalidInput as exc:
                    raise InvalidInput(f"{path}: the package's name is not usable ({exc}); pass --name NAME") from None
            if not aliases:  # as `register RUN` does: the training config's [register] aliases
                aliases = _package_aliases(path, manifest)
            store.sweep_staging()
            with store.staging() as staged:
                try:
                    files = reader.extract_to(staged, limits)
                except gzip.BadGzipFile:
                    raise  # a bad archive: open_package reports it
                except OSError as exc:  # writing into staging failed (full disk...), not a bad archive
                    raise OperationFailed(f"cannot extract {path} into {staged}: {exc.strerror or exc}") from None
                signatures = _checked_signatures(path, staged, manifest)
                if isinstance(manifest.get("signature_bundle"), dict):  # the signer's bundle comes along
                    from maasctl.store.signing import write_bundle

                    write_bundle(staged, manifest["signature_bundle"])
                notes = _notes(manifest.get("description"), manifest.get("tags"))
                return store.publish(staged, files, name, signatures=signatures,
                                     meta={**mf.model_meta(manifest), **(meta or {})}, aliases=aliases,
                                     description=description or notes.get("description", ""),
                                     tags={**notes.get("tags", {}), **(tags or {})},
                                     source_label=source_label or str(path.resolve()), new_version=new_version,
                                     check=check)
    except BaseException:
        # a refused package leaves no trace: not even the directories a fresh store would have gained
        if not staging_existed:
            with contextlib.suppress(OSError):
                store.staging_root.rmdir()
        if not root_existed:
            with contextlib.suppress(OSError):
                store.root.rmdir()
        raise


def _checked_signatures(path: Path, staged: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    from maasctl.store.savedmodel import read_signatures

    try:
        signatures = read_signatures(staged)
    except InvalidInput as exc:
        detail = str(exc).replace(str(staged), MODEL_DIR)
        raise InvalidInput(f"{path}: {MODEL_DIR}/ is not a valid SavedModel ({detail})") from None
    if manifest.get("signatures") != signatures:
        raise InvalidInput(f"{path}: the signatures in {mf.MANIFEST_NAME} do not match {MODEL_DIR}/saved_model.pb")
    return signatures


def refusal(target: str) -> str | None:
    """For a package file: why `register` would refuse it (entries, sizes, digests, trailing data), or None."""
    path = Path(target)
    return verify_package(path) if path.is_file() else None


def inspect_target(store: ModelStore, target: str) -> dict[str, Any]:
    """The manifest of a package file, or of a registered version (`NAME[@VERSION|@ALIAS]`); a signed one
    gains `signing` (signed, key_fingerprint), an unsigned one stays exactly the manifest."""
    from maasctl.store.signing import bundle_summary

    path = Path(target)
    if path.is_file():
        manifest = read_package_manifest(path)
        return _with_signing(manifest, bundle_summary(manifest.get("signature_bundle")))
    if path.is_dir():
        raise InvalidInput(f"{target}: is a directory; inspect takes a package file or a registered NAME@VERSION")
    if "/" in target or os.sep in target or target.endswith(PACKAGE_SUFFIX):
        raise NotFound(f"{target}: no such package file")
    try:
        ref = parse_ref(target)
    except InvalidInput:
        raise NotFound(f"{target}: no such package file or registered model (see: maasctl list)") from None
    info = store.resolve(ref)
    return _with_signing(store.manifest(info), bundle_summary(store.signature(info)))


def _with_signing(manifest: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    if not summary["signed"]:
        return manifest
    return {**manifest, "signing": {k: summary[k] for k in ("signed", "key_fingerprint")}}


def verify_package(path: str | Path) -> str | None:
    """Every check `register` makes on the archive (entries, sizes, digests, trailing data), writing nothing;
    the refusal `register` would give, or None."""
    try:
        with open_package(path, limits := Limits.from_env()) as reader:
            reader.extract_to(None, limits)
    except InvalidInput as exc:
        return str(exc)
    return None
