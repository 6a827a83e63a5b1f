"""The model manifest (`maas.json`): the same document sits beside a stored version and inside a package."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from maasctl.errors import InvalidInput, writing
from maasctl.store.hashing import FileEntry, content_sha256

MANIFEST_NAME = "maas.json"
SIGNATURE_NAME = "maas.sig"  # a version's signature bundle (store/signing.py): beside the files, never one of them
RESERVED = frozenset({MANIFEST_NAME, SIGNATURE_NAME})
FORMAT_VERSION = 1
# Metadata carried from a training run through a package into the registry.
META_KEYS = ("task", "feature_names", "class_names", "metrics", "params", "lineage", "environment")


def build_manifest(name: str, files: list[FileEntry], signatures: dict[str, Any],
                   meta: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    files = sorted(files, key=lambda f: f.path)
    doc: dict[str, Any] = {"format_version": FORMAT_VERSION, "name": name, **extra}
    doc["signatures"] = signatures
    for key in META_KEYS:
        value = (meta or {}).get(key)
        if value is not None:
            doc[key] = value
    doc["files"] = [f.to_json() for f in files]
    doc["content_sha256"] = content_sha256(files)
    return doc


def dumps(manifest: dict[str, Any]) -> bytes:
    """Canonical bytes: sorted keys, fixed separators, so equal manifests are equal files."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def write_manifest(directory: Path, manifest: dict[str, Any], *, fsync: bool = True) -> None:
    path = directory / MANIFEST_NAME
    with writing(path), open(path, "wb") as f:
        f.write(dumps(manifest))
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _bad(where: str, field: str, expected: str, value: Any) -> InvalidInput:
    return InvalidInput(f"{where}: manifest field '{field}' must be {expected} (got {_kind(value)})")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_spec(where: str, field: str, spec: Any) -> None:
    if not isinstance(spec, dict) or not isinstance(spec.get("dtype"), str):
        raise _bad(where, field, "an object with a string 'dtype'", spec)
    shape = spec.get("shape")
    if shape is not None and not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool)
                                                                  for d in shape)):
        raise _bad(where, f"{field}.shape", "a list of integers or null", shape)


def check_schema(doc: dict[str, Any], where: str) -> None:
    """Every field's type and shape, so `show`, `inspect`, :classify and predict can trust the metadata."""
    if not isinstance(doc.get("name"), str):
        raise _bad(where, "name", "a string", doc.get("name"))
    sigs = doc.get("signatures")
    if not isinstance(sigs, dict):
        raise _bad(where, "signatures", "an object (signature name -> inputs/outputs)", sigs)
    for sname, sig in sigs.items():
        if not isinstance(sig, dict):
            raise _bad(where, f"signatures.{sname}", "an object with 'inputs' and 'outputs'", sig)
        for side in ("inputs", "outputs"):
            specs = sig.get(side)
            if not isinstance(specs, dict):
                raise _bad(where, f"signatures.{sname}.{side}", "an object (tensor name -> spec)", specs)
            for tname, spec in specs.items():
                _check_spec(where, f"signatures.{sname}.{side}.{tname}", spec)
        if not isinstance(sig.get("method_name", ""), str):
            raise _bad(where, f"signatures.{sname}.method_name", "a string", sig.get("method_name"))
    checks: dict[str, tuple[str, Any]] = {
        "task": ("a string", lambda v: isinstance(v, str)),
        "description": ("a string", lambda v: isinstance(v, str)),
        "created_at": ("a string", lambda v: isinstance(v, str)),
        "version": ("a positive integer", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0),
        "feature_names": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
        "class_names": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
        "metrics": ("an object of numbers (metric -> value)",
                    lambda v: isinstance(v, dict) and all(_is_num(x) or x is None for x in v.values())),
        "tags": ("an object of strings", lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values())),
        "params": ("an object", lambda v: isinstance(v, dict)),
        "lineage": ("an object", lambda v: isinstance(v, dict)),
        "environment": ("an object", lambda v: isinstance(v, dict)),
        "signature_bundle": ("an object (a Sigstore bundle)", lambda v: isinstance(v, dict)),
    }
    for key, (expected, ok) in checks.items():
        if key in doc and doc[key] is not None and not ok(doc[key]):
            raise _bad(where, key, expected, doc[key])


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """Parse and check a manifest's structure; InvalidInput names `where` and the bad field."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{where}: manifest is not valid JSON ({exc})") from None
    except RecursionError:
        raise InvalidInput(f"{where}: manifest is not valid JSON (nested too deeply)") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where}: manifest must be a JSON object")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise InvalidInput(f"{where}: unsupported manifest format_version {version!r} (this maasctl reads {FORMAT_VERSION})")
    files = doc.get("files")
    if not isinstance(files, list):
        raise InvalidInput(f"{where}: manifest field 'files' must be a list")
    for i, f in enumerate(files):
        if not (isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("size"), int)
                and isinstance(f.get("sha256"), str) and len(f["sha256"]) == 64):
            raise InvalidInput(f"{where}: manifest field files[{i}] must have path, size and a sha256 hex digest")
        try:
            f["path"].encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"{where}: manifest field files[{i}].path is not valid UTF-8 text") from None
    if content_sha256(file_entries(doc)) != doc.get("content_sha256"):
        raise InvalidInput(f"{where}: manifest content_sha256 does not match its file list")
    check_schema(doc, where)
    return doc


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"{path}: manifest is missing") from None
    return parse_manifest(data, str(path))


def file_entries(manifest: dict[str, Any]) -> list[FileEntry]:
    return [FileEntry.from_json(f) for f in manifest["files"]]


def model_meta(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: manifest[k] for k in META_KEYS if k in manifest}
