"""The Source: which versions of each model should be served now ("aspired versions").

It polls the store and, per served model, emits the complete set of versions plus the labels (aliases)
that point into it. It never emits an empty set because the store could not be read: on a read error
the last good answer stands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from maasctl.refs import ModelRef

if TYPE_CHECKING:
    from maasctl.store.base import ModelStore

log = logging.getLogger("maasctl.serve")


@dataclass(frozen=True)
class Aspired:
    """What to serve for one model: versions and the labels that point at them."""

    versions: frozenset[int]
    labels: dict[str, int] = field(default_factory=dict)


def aspired_for(refs: list[ModelRef], snap: dict[str, Any], previous: dict[str, Aspired] | None = None
                ) -> dict[str, Aspired]:
    """Pure: the aspired versions for `refs` given one `store.snapshot()`.

    NAME (latest): the highest live version plus every version an alias points at.
    NAME@V: V (dropped once V is removed from the store). NAME@ALIAS: the alias's target; if the alias
    vanishes, the previous target stays (a deleted alias should not take a serving model down).
    """
    previous = previous or {}
    out: dict[str, Aspired] = {}
    by_name: dict[str, list[ModelRef]] = {}
    for r in refs:
        by_name.setdefault(r.name, []).append(r)
    for name, rs in by_name.items():
        entry = snap.get(name) or {"versions": [], "aliases": {}}
        live = set(entry["versions"])
        aliases = {a: v for a, v in entry["aliases"].items() if v in live}
        wanted: set[int] = set()
        for r in rs:
            if r.version is not None:
                if r.version in live:
                    wanted.add(r.version)
            elif r.alias is not None:
                if r.alias in aliases:
                    wanted.add(aliases[r.alias])
                elif name in previous:
                    kept = previous[name].labels.get(r.alias)
                    if kept is not None and kept in live:
                        wanted.add(kept)
            else:
                if live:
                    wanted.add(max(live))
                wanted.update(aliases.values())
        labels = {a: v for a, v in aliases.items() if v in wanted}
        for r in rs:  # keep a vanished alias's label alive alongside its kept version
            if r.alias is not None and r.alias not in labels and name in previous:
                kept = previous[name].labels.get(r.alias)
                if kept in wanted:
                    labels[r.alias] = kept
        out[name] = Aspired(frozenset(wanted), labels)
    return out


class StoreSource:
    """Reads the store and returns the aspired versions; keeps the last good answer on errors."""

    def __init__(self, store: ModelStore, refs: list[ModelRef]) -> None:
        self.store = store
        self.refs = list(refs)
        self.names = sorted({r.name for r in refs})
        self.last: dict[str, Aspired] | None = None
        self.last_error: str | None = None

    def poll(self) -> dict[str, Aspired] | None:
        """The current aspired versions, or the last good ones (None before any success) on error."""
        try:
            snap = self.store.snapshot(self.names)
        except Exception as exc:  # noqa: BLE001 - sqlite3.Error, OSError...: keep serving what we have
            msg = f"cannot read the store at {self.store.location}: {exc}"
            if msg != self.last_error:
                log.warning("%s (keeping the current versions)", msg)
            self.last_error = msg
            return self.last
        self.last_error = None
        self.last = aspired_for(self.refs, snap, self.last)
        return self.last
