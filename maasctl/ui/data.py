"""What the web view shows, as JSON-ready dicts: the `/api/...` documents, which the HTML pages render.

Read-only: models and versions come from the store's public methods (list_models, list_versions, aliases,
history, resolve, manifest), runs from maasctl.training.runs, servers from their records (never pruned here).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from typing import Any

from maasctl.errors import InvalidInput, NotFound
from maasctl.refs import ModelRef, check_name
from maasctl.training import compare
from maasctl.training.runs import list_runs, load_run


def models(store: Any) -> list[dict[str, Any]]:
    return [m.to_json() for m in store.list_models()]


def _check_name(name: str) -> None:
    try:
        check_name(name)
    except InvalidInput:
        raise NotFound(f"no model '{name}' (not a model name)") from None


def model(store: Any, name: str) -> dict[str, Any]:
    """A model: every live version (newest first), its aliases, and each alias's history (oldest first)."""
    _check_name(name)
    versions = store.list_versions(name)
    events = store.history(name)
    alias_history: dict[str, list[dict[str, Any]]] = {}
    for ev in events:
        if ev.get("alias"):
            alias_history.setdefault(ev["alias"], []).append(
                {"at": ev["at"], "event": ev["event"], "from_version": ev["from_version"],
                 "to_version": ev["to_version"], "who": ev.get("who")})
    return {"name": name, "latest": versions[-1].version, "aliases": store.aliases(name),
            "versions": [v.to_json() for v in reversed(versions)], "alias_history": alias_history,
            "events": events}


def version(store: Any, name: str, number: str) -> dict[str, Any]:
    """One version: the index record plus its manifest's signatures, file count and content digest."""
    _check_name(name)
    if not number.isascii() or not number.isdigit() or len(number) > 18:
        raise NotFound(f"model '{name}' has no version '{number}'")
    info = store.resolve(ModelRef(name, version=int(number)))
    manifest = store.manifest(info)
    registered = [ev for ev in store.history(name) if ev.get("event") == "registered"
                  and ev.get("version") == info.version]
    files = manifest.get("files") or []
    return {**info.to_json(), "registered_at": info.created_at, "registered_from": info.source,
            "registered_by": registered[-1].get("who") if registered else None,  # user@host where the store keeps it
            "signatures": manifest.get("signatures") or {}, "files": len(files),
            "content_sha256": manifest.get("content_sha256"), "environment": manifest.get("environment") or {},
            "params": manifest.get("params") or {}}


def runs(store: Any) -> list[dict[str, Any]]:
    """Every run, newest first."""
    return [{"run_id": r.run_id, "created_at": r.created_at, "task": r.record.get("task"),
             "epochs_run": r.record.get("epochs_run"), "metrics": r.record.get("metrics") or {},
             "register_name": r.register_name,
             "config_path": (r.record.get("lineage") or {}).get("config_path")} for r in reversed(list_runs(store))]


def run(store: Any, run_id: str) -> dict[str, Any]:
    """One run: its record less the bulky history, the curves per metric, and the effective config (TOML)."""
    import tomli_w

    try:
        r = load_run(store, run_id)
    except InvalidInput:
        raise NotFound(f"run '{run_id}' not found (not a run id)") from None
    rec = r.record
    params = rec.get("params") or {}
    try:
        config_toml = tomli_w.dumps(params)
    except (TypeError, ValueError):
        config_toml = ""
    curves = [{"metric": c["metric"], "train": [[e, v] for e, v in c["train"]],
               "validation": [[e, v] for e, v in c["validation"]]} for c in compare.curves(r)]
    keep = ("created_at", "task", "feature_names", "class_names", "metrics", "epochs_run", "final_epoch",
            "stopped_early", "lineage", "environment", "data", "train_time_s", "wall_time_s")
    return {"run_id": r.run_id, **{k: rec.get(k) for k in keep}, "register_name": r.register_name,
            "registered_as": registered_from_run(store, r.run_id), "curves": curves, "config": params,
            "config_toml": config_toml}


def compare_runs(store: Any, run_ids: list[str], metric: str | None) -> dict[str, Any]:
    """`runs compare` for the view: the same document as `maasctl runs compare --json`."""
    loaded = []
    for run_id in run_ids:
        try:
            loaded.append(load_run(store, run_id))
        except InvalidInput:
            raise NotFound(f"run '{run_id}' not found (not a run id)") from None
    return compare.compare(loaded, metric)


def registered_from_run(store: Any, run_id: str) -> list[str]:
    """The live versions whose lineage names this run (NAME@N), by model then version."""
    refs = []
    for m in store.list_models():
        try:
            versions = store.list_versions(m.name)
        except NotFound:  # removed meanwhile
            continue
        refs += [v.ref for v in versions if (v.lineage or {}).get("run_id") == run_id]
    return refs


class ServerProbe:
    """Status and request rate of detached servers, from /readyz and their Prometheus endpoint.

    The rate is the change of `maasctl_requests_total` between two looks (this process keeps the last sample
    of each server), so the first look shows the total only.
    """

    def __init__(self, timeout: float = 1.0) -> None:
        self.timeout = timeout
        self._last: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy

    def _get(self, url: str) -> tuple[int, str]:
        try:
            with self._opener.open(url, timeout=self.timeout) as resp:
                return resp.status, resp.read(1 << 22).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except (OSError, ValueError):
            return 0, ""

    def servers(self, store: Any) -> list[dict[str, Any]]:
        from maasctl.serving.records import list_servers

        out = []
        for rec in list_servers(store, prune=False):
            doc = rec.to_json()
            doc.update(self._probe(rec.id, rec.url.rstrip("/")))
            out.append(doc)
        return out

    def _probe(self, server_id: str, url: str) -> dict[str, Any]:
        code, _ = self._get(url + "/readyz")
        status = {200: "ready", 503: "loading", 401: "needs token"}.get(code, "unreachable" if code == 0
                                                                       else f"HTTP {code}")
        total = rate = None
        if code in (200, 503):
            mcode, text = self._get(url + "/monitoring/prometheus/metrics")
            if mcode == 200:
                total = requests_total(text)
                now = time.monotonic()
                with self._lock:
                    last = self._last.get(server_id)
                    self._last[server_id] = (now, total)
                if last is not None and now > last[0] and total >= last[1]:
                    rate = round((total - last[1]) / (now - last[0]), 3)
        return {"status": status, "requests_total": total, "requests_per_second": rate}


def requests_total(metrics_text: str) -> float:
    """The sum of `maasctl_requests_total` over all its label sets in a Prometheus text exposition."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(("maasctl_requests_total{", "maasctl_requests_total ")):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
    return total
