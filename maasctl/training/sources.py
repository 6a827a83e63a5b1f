"""Where `data.path` points: one file, a list of files, a glob, or `s3://BUCKET/KEY` (globs too).

S3 objects are downloaded into a temporary directory removed at exit, with the S3 store's client (the standard
AWS credential chain and `AWS_ENDPOINT_URL`; needs the `s3` extra), and recorded under their s3:// URL.
"""

from __future__ import annotations

import atexit
import fnmatch
import glob
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maasctl.errors import InvalidInput, NotFound

GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Source:
    """One data file: what the config named (a local path or an s3:// URL) and where it is readable now."""

    name: str
    local: Path


def is_glob(text: str) -> bool:
    return any(c in text for c in GLOB_CHARS)


_TMP: list[str] = []


def _download_dir() -> Path:
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="maasctl-data-"))
        atexit.register(shutil.rmtree, _TMP[0], True)
    return Path(_TMP[0])


def _s3_sources(cfg: Any, key: str, url: str) -> list[tuple[str, Any]]:
    """[(s3://bucket/key, a function that downloads it and returns its Source)] for one URL or glob."""
    from maasctl.store.s3io import S3, Location

    rest = url[len("s3://"):]
    bucket, _, path = rest.partition("/")
    if not bucket or not path:
        raise InvalidInput(f"{cfg.path}: {key}: expected s3://BUCKET/KEY, got \"{url}\"")
    s3 = S3(Location(bucket, ""))
    if is_glob(path):
        fixed = path[:min(path.index(c) for c in GLOB_CHARS if c in path)]
        keys = [o["Key"] for o in s3.objects(fixed) if fnmatch.fnmatchcase(o["Key"], path)]
        if not keys:
            raise NotFound(f"{cfg.path}: {key}: no object matches {url}")
    else:
        keys = [path]

    def download(k: str) -> Source:
        local = _download_dir() / f"{len(list(_download_dir().iterdir())):04d}-{Path(k).name}"
        try:
            s3.download_file(k, str(local))
        except NotFound:
            raise NotFound(f"{cfg.path}: {key}: object not found: s3://{bucket}/{k}") from None
        return Source(f"s3://{bucket}/{k}", local)

    return [(f"s3://{bucket}/{k}", lambda k=k: download(k)) for k in keys]


def _local_sources(cfg: Any, key: str, value: str) -> list[tuple[str, Any]]:
    path = cfg.resolve(value)
    if not is_glob(value):
        return [(str(path), lambda: Source(str(path), path))]
    matches = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
    if not matches:
        raise NotFound(f"{cfg.path}: {key}: no file matches {path}")
    return [(str(m), lambda m=m: Source(str(m), m)) for m in matches]


def data_sources(cfg: Any, key: str, value: str | list[str],
                 pick: Callable[[list[str]], Sequence[int]] | None = None) -> list[Source]:
    """Every file `value` names, in order (globs sorted), each once; with `pick`, only the files at the indexes it
    returns for the list of all names (an S3 object that is not picked is not downloaded)."""
    found: dict[str, Callable[[], Source]] = {}
    for item in [value] if isinstance(value, str) else value:
        listed = _s3_sources(cfg, key, item) if item.startswith("s3://") else _local_sources(cfg, key, item)
        for name, fetch in listed:
            found.setdefault(name, fetch)
    names = list(found)
    chosen = range(len(names)) if pick is None else pick(names)
    return [found[names[i]]() for i in chosen]
