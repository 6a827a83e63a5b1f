"""The registry interface every store backend implements, and `open_store` that picks the backend.

Two backends: `LocalStore` (a directory + SQLite index, store/local.py) and `S3Store` (a bucket prefix
with conditional writes, store/s3.py). Commands hold a `ModelStore` and never know which one it is.

Both keep the same version layout (`models/<name>/<N>/` = a TF Serving version directory + `maas.json`).
Runs, staging directories and detached-server records are always local: `root` is that local directory
(the store itself for a local store, `$MAASCTL_LOCAL_HOME` or `~/.maasctl` for a remote one), while
`location` is what messages show (a path or `s3://bucket/prefix`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from maasctl.errors import Conflict, InvalidInput
from maasctl.refs import ModelRef
from maasctl.store.hashing import FileEntry
from maasctl.store.types import GcReport, ModelSummary, RegisterResult, VerifyReport, VersionInfo

if TYPE_CHECKING:
    from maasctl.store.local import LocalStore

S3_SCHEME = "s3://"


@runtime_checkable
class ModelStore(Protocol):
    """The registry operations (design.md §6). Versions are immutable; numbers are never reused."""

    root: Path
    poll_seconds: float  # how often `serve` re-reads it by default (cheap locally, requests on S3)

    @property
    def location(self) -> str:
        """Where the registry lives, as users write it (`--store` value): a path or `s3://bucket/prefix`."""

    @property
    def runs_dir(self) -> Path: ...

    @property
    def staging_root(self) -> Path: ...

    @property
    def servers_dir(self) -> Path: ...

    @property
    def models_dir(self) -> Path:
        """A local directory of TF Serving model base paths (`--backend tfserving`); remote stores refuse."""

    # -- writing -------------------------------------------------------------------------------------
    def staging(self) -> ContextManager[Path]:
        """A fresh local scratch directory, removed on exit unless published."""

    def sweep_staging(self, *, dry_run: bool = False) -> list[str]: ...

    def register(self, source: str | Path, name: str, *, aliases: list[str] | tuple[str, ...] = (),
                 description: str = "", tags: dict[str, str] | None = None, meta: dict[str, Any] | None = None,
                 source_label: str | None = None, new_version: bool = False,
                 check: Callable[[Path], None] | None = None, bundle: bytes | None = None) -> RegisterResult:
        """Copy a SavedModel directory in as the next version of `name` (idempotent by content digest);
        `check` (a signature policy) may refuse the files first, leaving the store unchanged. `bundle`: a
        signature to keep with the version (default: the source's maas.sig, if any)."""

    def publish(self, staged: Path, files: list[FileEntry], name: str, *, signatures: dict[str, Any],
                aliases: list[str] | tuple[str, ...] = (), description: str = "",
                tags: dict[str, str] | None = None, meta: dict[str, Any] | None = None,
                source_label: str = "", new_version: bool = False,
                check: Callable[[Path], None] | None = None, bundle: bytes | None = None,
                progress: Callable[[int], None] | None = None) -> RegisterResult:
        """Publish a fully written staging directory whose files are hashed in `files` (it may be consumed)."""

    # -- reading -------------------------------------------------------------------------------------
    def resolve(self, ref: str | ModelRef) -> VersionInfo: ...

    def list_models(self) -> list[ModelSummary]: ...

    def list_versions(self, name: str) -> list[VersionInfo]: ...

    def aliases(self, name: str) -> dict[str, int]: ...

    def alias_list(self, name: str | None = None) -> list[dict[str, Any]]: ...

    def snapshot(self, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """One read of live versions and aliases per model (the serving Source polls this)."""

    def manifest(self, info: VersionInfo) -> dict[str, Any]: ...

    def index_mismatch(self) -> list[str]:
        """`name/N` of stored versions the registry index does not know (a store without an index: none)."""

    def history(self, name: str, alias: str | None = None) -> list[dict[str, Any]]: ...

    def open_version(self, info: VersionInfo, *, verify: bool = True,
                     progress: Callable[[int], None] | None = None) -> ContextManager[Path]:
        """A local directory holding the version's files, every digest checked against `maas.json`
        (OperationFailed naming the first bad file otherwise); valid (not evicted) inside the `with`.
        verify=False is for callers that hash what they read anyway (downloads are always checked).
        `progress(bytes)` hears about bytes downloaded (a remote store's cache miss)."""

    def prefetch(self, info: VersionInfo) -> None:
        """Start fetching a version into the local cache in the background (remote stores; locally a no-op),
        so a loader can import TensorFlow meanwhile; its open_version then waits for the download."""

    def signature(self, info: VersionInfo) -> bytes | None:
        """The version's signature bundle (maas.sig, store/signing.py), None when unsigned."""

    def set_signature(self, info: VersionInfo, bundle: bytes) -> None:
        """Keep a signature bundle with the version (replacing an earlier one; the files never change)."""

    # -- aliases and removal ---------------------------------------------------------------------------
    def set_alias(self, ref: str | ModelRef, alias: str, *,
                  expect_version: int | None = None) -> tuple[VersionInfo, int | None]:
        """Point alias at ref's version -> (that version, the previous one). With expect_version, fail
        (Conflict, exit 1) unless the alias currently points there."""

    def remove_alias(self, name: str, alias: str) -> int: ...

    def remove(self, ref: str | ModelRef, *, force: bool = False) -> VersionInfo: ...

    # -- integrity -------------------------------------------------------------------------------------
    def verify(self, ref: str | ModelRef | None = None) -> list[VerifyReport]: ...

    def check_version(self, info: VersionInfo) -> list[str]:
        """Problems with one stored version's files, each naming the file; empty when intact."""

    def gc(self, *, keep: int | None = None, dry_run: bool = False,
           lease_seconds: float | None = None) -> GcReport: ...


class StoreDefaults:
    """What both backends share, written once over the interface's other operations."""

    def alias_list(self: Any, name: str | None = None) -> list[dict[str, Any]]:
        """Every alias as {"name", "alias", "version"} (of one model: NotFound if it has no versions)."""
        models = self.list_models()
        if name is not None and name not in {m.name for m in models}:
            self.resolve(name)  # raises NotFound with the usual message
        return [{"name": m.name, "alias": a, "version": v} for m in models if name in (None, m.name)
                for a, v in m.aliases.items()]

    def prefetch(self: Any, info: VersionInfo) -> None:
        return None  # a local version is already on disk

    def signature(self: Any, info: VersionInfo) -> bytes | None:
        from maasctl.store.signing import read_bundle

        return read_bundle(info.path)

    def set_signature(self: Any, info: VersionInfo, bundle: bytes) -> None:
        from maasctl.store.signing import write_bundle

        write_bundle(info.path, bundle)

    @contextlib.contextmanager
    def open_version(self: Any, info: VersionInfo, *, verify: bool = True,
                     progress: Callable[[int], None] | None = None) -> Iterator[Path]:
        """A version kept in a local directory (info.path): that directory, after every file is re-hashed."""
        from maasctl.errors import OperationFailed

        if verify and (problems := self.check_version(info)):
            raise OperationFailed(refusal(info.path, problems))
        yield info.path


def refusal(where: object, problems: list[str]) -> str:
    """The one message for a version that must not be loaded (same wording as the loaders')."""
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"refusing to load {where}: {problems[0]}{more}"


def check_expected(name: str, alias: str, current: int | None, expected: int) -> None:
    """`alias set --expect-version N`: Conflict (exit 1) when the alias moved underneath the caller."""
    if current != expected:
        now = f"points at {current}" if current is not None else "does not exist"
        raise Conflict(f"alias {name}@{alias} {now}, not {expected} as expected (--expect-version); "
                       f"it changed underneath: see: maasctl alias history {name} {alias}")


def require_local(store: ModelStore, what: str) -> LocalStore:
    """The local store a local-only operation (`doctor`: SQLite index repair) needs; InvalidInput otherwise."""
    from maasctl.store.local import LocalStore

    if not isinstance(store, LocalStore):
        raise InvalidInput(f"{what} works on a local store's index; {store.location} has none "
                           f"(its versions are their maas.json objects: see maasctl verify)")
    return store


def is_remote(spec: str | Path | None) -> bool:
    return spec is not None and str(spec).startswith(S3_SCHEME)


def open_store(spec: str | Path | None = None) -> ModelStore:
    """The store `--store PATH|s3://BUCKET/PREFIX` names, else `$MAASCTL_HOME`, else `~/.maasctl`."""
    if spec is None or str(spec) == "":
        spec = os.environ.get("MAASCTL_HOME") or None
    if is_remote(spec):
        from maasctl.store.s3 import open_s3_store

        return open_s3_store(str(spec))
    from maasctl.store.local import LocalStore

    return LocalStore(spec)
