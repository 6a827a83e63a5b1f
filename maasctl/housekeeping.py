"""`maasctl gc` across the store's parts: the store's own leftovers, old unused runs, logs of stopped servers."""

from __future__ import annotations

from contextlib import suppress

from maasctl.store import ModelStore
from maasctl.store.types import GcReport


def collect_garbage(store: ModelStore, *, keep: int | None = None, dry_run: bool = False,
                    runs_older_than: float | None = None, lease_seconds: float | None = None,
                    log_min_age_s: float = 300.0, now: float | None = None) -> GcReport:
    """Store.gc (staging, orphans, --keep), then runs older than N days that no live version came from, then
    the logs of servers that are not running."""
    from maasctl.serving.records import stopped_server_logs
    from maasctl.training.runs import remove_runs, unused_runs_older_than

    report = store.gc(keep=keep, dry_run=dry_run, lease_seconds=lease_seconds)
    if runs_older_than is not None:
        old = [r.run_id for r in unused_runs_older_than(store, runs_older_than, now)]
        report.runs = remove_runs(store, old, dry_run=dry_run) if old else []
    for log in stopped_server_logs(store, log_min_age_s, now):
        report.logs.append(str(log))
        if not dry_run:
            with suppress(FileNotFoundError):
                log.unlink()
    return report
