"""The S3 store's per-model version index: a cache that makes `list` a few requests instead of one per version.

`_maas/<name>/index.json` = `{"format": 1, "versions": {"<N>": {etag, created_at, content_sha256, size, source,
description, tags, metrics, lineage, meta}}}`: what a version record needs, copied from each committed
`maas.json` (ETag included). The `maas.json` objects stay the truth; the index is only ever a cache:

- a writer adds its version after committing it, and `rm` drops it before deleting the marker, each by
  compare-and-swap (`If-Match` the index's ETag; `If-None-Match: *` to create it): no lock, no lost update;
- every read checks it against one delimiter LIST of `models/<name>/` (CommonPrefixes: one request per 1,000
  versions, not one per object): a version directory the index lacks gets its `maas.json` fetched (committed
  but not yet indexed, e.g. its writer died right after committing, or the index was deleted), an indexed
  version whose directory is gone is dropped; what it learns is written back (compare-and-swap, best effort).

So a lost, stale or corrupt index costs requests, never a version. `gc` rebuilds it from a full listing.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from maasctl.errors import MaasError
from maasctl.store import manifest as mf
from maasctl.store.s3io import S3, LostRace

FORMAT = 1
CAS_ATTEMPTS = 50
Entry = dict[str, Any]


def summarize(manifest: dict[str, Any], etag: str) -> Entry:
    """What a version record needs from a committed manifest (files and signatures stay in maas.json)."""
    return {
        "etag": etag, "created_at": manifest.get("created_at", ""), "content_sha256": manifest["content_sha256"],
        "size": sum(f["size"] for f in manifest["files"]), "source": manifest.get("source", ""),
        "description": manifest.get("description", ""), "tags": manifest.get("tags") or {},
        "metrics": manifest.get("metrics") or {}, "lineage": manifest.get("lineage") or {},
        "meta": {k: manifest[k] for k in mf.META_KEYS if k in manifest and k not in ("metrics", "lineage")},
    }


def _parse(body: bytes) -> dict[int, Entry]:
    try:
        doc = json.loads(body)
        if doc.get("format") != FORMAT:
            return {}
        return {int(v): e for v, e in doc["versions"].items() if isinstance(e, dict) and "content_sha256" in e}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}  # unreadable: treated as empty, rebuilt by the next read


def _dump(entries: dict[int, Entry]) -> bytes:
    return json.dumps({"format": FORMAT, "versions": {str(v): entries[v] for v in sorted(entries)}},
                      sort_keys=True, separators=(",", ":")).encode()


class VersionIndex:
    """The index of one model. `fetch(version)` reads a committed manifest: (doc, etag) or None."""

    def __init__(self, s3: S3, key: str, versions_prefix: str,
                 fetch: Callable[[int], tuple[dict[str, Any], str] | None],
                 pmap: Callable[[Callable[[Any], Any], list[Any]], list[Any]]) -> None:
        self.s3, self.key, self.prefix, self.fetch, self.pmap = s3, key, versions_prefix, fetch, pmap
        self.seen: tuple[dict[int, Entry], str | None] | None = None  # the last state read or written

    def read(self) -> tuple[dict[int, Entry], str | None]:
        got = self.s3.get(self.key)
        self.seen = (_parse(got[0]), got[1]) if got else ({}, None)
        return self.seen

    def committed(self) -> dict[int, Entry]:
        """{version: entry} of the committed versions, checked against a delimiter LIST and repaired."""
        (entries, etag), dirs = self.pmap(lambda f: f(), [self.read, lambda: self.s3.list_dirs(self.prefix)])
        present = {int(d) for d in dirs if d.isdigit()}
        gone = {v: entries[v]["etag"] for v in set(entries) - present}
        unknown = sorted(present - set(entries))
        found = {}
        for v, got in zip(unknown, self.pmap(self.fetch, unknown)):
            if got is not None:
                found[v] = summarize(*got)
        out = {v: e for v, e in entries.items() if v in present}
        out.update(found)
        if found or gone:
            self.update(lambda cur: {**{v: e for v, e in cur.items() if gone.get(v) != e["etag"]}, **found},
                        known=(entries, etag))
        return dict(sorted(out.items()))

    def rebuild(self) -> bool:
        """For gc: check the index against a full listing of the maas.json objects (exact, one request per
        1,000 objects) and fix it; True when it was wrong."""
        etags = {}
        for obj in self.s3.objects(self.prefix):
            head, _, tail = obj["Key"][len(self.prefix):].partition("/")
            if tail == mf.MANIFEST_NAME and head.isdigit():
                etags[int(head)] = obj["ETag"]
        entries, _ = self.read()
        keep = {v: e for v, e in entries.items() if etags.get(v) == e["etag"]}
        missing = sorted(set(etags) - set(keep))
        for v, got in zip(missing, self.pmap(self.fetch, missing)):
            if got is not None:
                keep[v] = summarize(*got)
        if keep == entries:
            return False
        # versions committed after our listing (not in `entries`, not in `etags`) stay
        self.update(lambda cur: {**{v: e for v, e in cur.items() if v not in entries and v not in etags}, **keep})
        return True

    def add(self, version: int, entry: Entry) -> None:
        """After a commit: usually one PUT, on the state this object last saw (a stale one costs a retry)."""
        self.update(lambda cur: {**cur, version: entry}, known=self.seen)

    def drop(self, version: int) -> None:
        self.update(lambda cur: {v: e for v, e in cur.items() if v != version})

    def update(self, change: Callable[[dict[int, Entry]], dict[int, Entry]],
               known: tuple[dict[int, Entry], str | None] | None = None) -> bool:
        """Compare-and-swap `change(current)` in; retries on a lost race. Best effort: False if it gave up or
        could not write (the next read repairs the index from the maas.json objects)."""
        for attempt in range(CAS_ATTEMPTS):
            try:
                cur, etag = known if known is not None else self.read()
            except MaasError:
                return False
            known = None
            new = change(cur)
            if new == cur and etag is not None:
                return True
            try:
                if etag is None:
                    written = self.s3.put(self.key, _dump(new), if_none_match=True)
                else:
                    written = self.s3.put(self.key, _dump(new), if_match=etag)
                self.seen = (new, written)
                return True
            except LostRace:
                time.sleep(random.uniform(0, 0.01 * min(attempt + 1, 10)))
            except MaasError:  # e.g. read-only credentials listing the store: the cache stays as it is
                return False
        return False
