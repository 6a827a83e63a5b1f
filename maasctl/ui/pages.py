"""HTML pages of the web view, rendered from the `/api/...` documents (maasctl.ui.data).

Plain HTML and one inline stylesheet: no script, nothing loaded from elsewhere (the CSP says so). Every link
is an `<a>`, so Tab / Enter / the browser's back key are the whole keyboard interface; focus is always visible.
Dark mode follows `prefers-color-scheme`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from html import escape
from typing import Any
from urllib.parse import quote

from maasctl import __version__
from maasctl.ui.svg import line_chart

CSS = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--head:#f6f8fa;--link:#0550ae;
--focus:#bf3989;--series-0:#0969da;--series-1:#cf222e;--series-2:#1a7f37;--series-3:#8250df;--series-4:#bc4c00;
--series-5:#116329}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#30363d;--head:#161b22;
--link:#58a6ff;--focus:#f778ba;--series-0:#58a6ff;--series-1:#ff7b72;--series-2:#3fb950;--series-3:#d2a8ff;
--series-4:#ffa657;--series-5:#7ee787}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
a{color:var(--link)}
a:focus-visible,summary:focus-visible,input:focus-visible,button:focus-visible{outline:3px solid var(--focus);outline-offset:2px;border-radius:2px}
.skip{position:absolute;left:-9999px}.skip:focus{left:8px;top:8px;background:var(--bg);padding:4px 8px;z-index:1}
header{display:flex;gap:1.5rem;align-items:baseline;padding:.7rem 1.5rem;border-bottom:1px solid var(--line);
background:var(--head);flex-wrap:wrap}
header .brand{font-weight:700;text-decoration:none;color:var(--fg)}
header nav a{margin-right:1rem}header nav a[aria-current]{font-weight:700;text-decoration:none}
main{padding:1rem 1.5rem 3rem;max-width:1200px}
h1{font-size:1.5rem;margin:.4rem 0 1rem}h2{font-size:1.15rem;margin:1.6rem 0 .6rem}
.crumbs{color:var(--muted);font-size:.9rem}.muted{color:var(--muted)}
table{border-collapse:collapse;margin:.3rem 0 1rem;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid var(--line);padding:.3rem .8rem .3rem 0;text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:600}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1.2rem;margin:.3rem 0 1rem}dt{color:var(--muted)}
dd{margin:0;overflow-wrap:anywhere}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:var(--head);border:1px solid var(--line);padding:.7rem;overflow:auto;max-width:100%}
.tag{display:inline-block;border:1px solid var(--line);border-radius:1em;padding:0 .55em;margin:0 .25em .15em 0;
font-size:.85rem}
button{font:inherit;padding:.3rem .8rem}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
svg.chart{max-width:100%;height:auto;background:var(--bg)}
svg .plot{fill:none;stroke:var(--line)}svg .grid{stroke:var(--line);stroke-dasharray:2 3}
svg text{fill:var(--muted);font-size:11px}svg .chart-title{fill:var(--fg);font-size:13px;font-weight:600}
svg .series polyline,svg .series line{stroke-width:2}
""" + "".join(f"svg .series-{i} polyline,svg .series-{i} line{{stroke:var(--series-{i})}}"
              f"svg .series-{i} circle{{fill:var(--series-{i})}}" for i in range(6))

NAV = (("/", "Models", "models"), ("/runs", "Runs", "runs"), ("/servers", "Servers", "servers"))


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def q(part: Any) -> str:
    return quote(str(part), safe="")


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None or v == "" else str(v)


def size(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def page(title: str, body: str, *, section: str, api: str | None = None, crumbs: str = "") -> str:
    """A whole document; `crumbs` are links to the enclosing pages, each followed by ' / '."""
    nav = "".join(f'<a href="{href}"{" aria-current=page" if key == section else ""}>{label}</a>'
                  for href, label, key in NAV)
    api_link = f'<a href="{e(api)}">JSON</a>' if api else ""
    trail = f"{crumbs}{e(title)}{' · ' + api_link if api_link else ''}" if crumbs else api_link
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{e(title)} · maasctl</title><style>{CSS}</style></head>'
            f'<body><a class="skip" href="#main">Skip to content</a>'
            f'<header><a class="brand" href="/">maasctl</a><nav aria-label="Sections">{nav}</nav></header>'
            f'<main id="main" tabindex="-1"><nav class="crumbs" aria-label="Breadcrumb">{trail}</nav><h1>{e(title)}</h1>'
            f'{body}<p class="muted">maasctl {e(__version__)} · read-only view</p></main></body></html>')


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], *, caption: str = "", cls: str = "") -> str:
    """Cells are HTML already (escape with e())."""
    head = "".join(f'<th scope="col">{h}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    cap = f"<caption class=muted>{e(caption)}</caption>" if caption else ""
    return f'<table class="{cls}">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def pairs(items: Iterable[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def tags(values: Iterable[Any]) -> str:
    return "".join(f'<span class="tag">{e(v)}</span>' for v in values) or '<span class="muted">-</span>'


def metrics_text(metrics: dict[str, Any] | None) -> str:
    return e(", ".join(f"{k} {fmt(v)}" for k, v in (metrics or {}).items())) or '<span class="muted">-</span>'


def run_link(run_id: Any) -> str:
    return f'<a href="/runs/{q(run_id)}">{e(run_id)}</a>' if run_id else '<span class="muted">-</span>'


# -- models ---------------------------------------------------------------------------------------------------
def models_page(models: list[dict[str, Any]]) -> str:
    if not models:
        body = '<p>No models registered yet. See <code>maasctl register --help</code>.</p>'
    else:
        body = table(["Model", "Latest", "Versions", "Aliases", "Created"],
                     [(f'<a href="/models/{q(m["name"])}">{e(m["name"])}</a>', e(m["latest"]), e(m["versions"]),
                       tags(f"{a} → {v}" for a, v in m["aliases"].items()), e(m["created_at"])) for m in models])
    return page("Models", body, section="models", api="/api/models")


def model_page(doc: dict[str, Any]) -> str:
    name = doc["name"]
    rows = []
    for v in doc["versions"]:
        lin = v.get("lineage") or {}
        rows.append((f'<a href="/models/{q(name)}/{v["version"]}">{e(v["ref"])}</a>', tags(v["aliases"]),
                     e(v["created_at"]), e(size(v["size"])), e(v.get("source")), metrics_text(v.get("metrics")),
                     run_link(lin.get("run_id"))))
    body = "<h2 id=versions>Versions</h2>" + table(
        ["Version", "Aliases", "Registered", "Size", "Source", "Metrics", "Run"], rows, cls="versions")
    body += "<h2 id=aliases>Aliases</h2>"
    if doc["aliases"]:
        alias_rows = []
        for alias, ver in doc["aliases"].items():
            hist = doc["alias_history"].get(alias, [])
            moves = "<br>".join(
                e(f'{h["at"]}  {h["event"].replace("_", " ")}: '
                  f'{fmt(h["from_version"])} → {fmt(h["to_version"])}' + (f' by {h["who"]}' if h.get("who") else ""))
                for h in hist) or '<span class="muted">-</span>'
            alias_rows.append((e(alias), f'<a href="/models/{q(name)}/{ver}">{e(name)}@{e(ver)}</a>', moves))
        body += table(["Alias", "Points at", "History (oldest first)"], alias_rows, cls="aliases")
    else:
        body += "<p class=muted>No aliases.</p>"
    removed = {a: h for a, h in doc["alias_history"].items() if a not in doc["aliases"]}
    if removed:
        body += "<h2>Removed aliases</h2>" + table(
            ["Alias", "History"], [(e(a), "<br>".join(e(f'{x["at"]}  {x["event"]}') for x in h))
                                   for a, h in removed.items()])
    crumbs = '<a href="/">Models</a> / '
    return page(f"Model {name}", body, section="models", api=f"/api/models/{q(name)}", crumbs=crumbs)


def _signature_rows(signatures: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for sig_name, sig in signatures.items():
        for kind in ("inputs", "outputs"):
            for tensor, spec in (sig.get(kind) or {}).items():
                rows.append((e(sig_name), kind[:-1], e(tensor), e(spec.get("dtype")), e(spec.get("shape"))))
    return rows


def version_page(doc: dict[str, Any]) -> str:
    name, lin = doc["name"], doc.get("lineage") or {}
    items = [("Registered", e(doc["registered_at"]) + (f' by {e(doc["registered_by"])}' if doc.get("registered_by")
                                                        else "")),
             ("From", e(doc["registered_from"])),
             ("Aliases", tags(doc["aliases"])), ("Size", f'{e(size(doc["size"]))} in {e(doc["files"])} files'),
             ("Content sha256", f'<code>{e(doc["sha256"])}</code>'), ("Path", f'<code>{e(doc["path"])}</code>'),
             ("Task", e(fmt(doc.get("task")))), ("Description", e(fmt(doc.get("description")))),
             ("Tags", tags(f"{k}={v}" for k, v in (doc.get("tags") or {}).items()))]
    if doc.get("feature_names"):
        items.append(("Features", e(", ".join(doc["feature_names"]))))
    if doc.get("class_names"):
        items.append(("Classes", e(", ".join(doc["class_names"]))))
    body = pairs(items)
    body += "<h2>Metrics</h2>" + (table(["Metric", "Value"], [(e(k), e(fmt(v))) for k, v in doc["metrics"].items()])
                                  if doc.get("metrics") else "<p class=muted>None recorded.</p>")
    body += "<h2>Signatures</h2>" + (table(["Signature", "", "Tensor", "dtype", "Shape"],
                                           _signature_rows(doc["signatures"]))
                                     if doc.get("signatures") else "<p class=muted>None.</p>")
    body += "<h2>Lineage</h2>"
    if lin:
        body += pairs((k, run_link(v) if k == "run_id" else e(json.dumps(v) if isinstance(v, (dict, list)) else fmt(v)))
                      for k, v in lin.items() if k != "data_files")
    else:
        body += "<p class=muted>None recorded (registered from a directory or package without a run).</p>"
    crumbs = f'<a href="/">Models</a> / <a href="/models/{q(name)}">{e(name)}</a> / '
    return page(doc["ref"], body, section="models", api=f'/api/models/{q(name)}/{doc["version"]}', crumbs=crumbs)


# -- runs -----------------------------------------------------------------------------------------------------
def runs_page(runs: list[dict[str, Any]]) -> str:
    if not runs:
        body = "<p>No training runs yet. See <code>maasctl train --help</code>.</p>"
    else:
        rows = [((f'<input type="checkbox" name="run" value="{e(r["run_id"])}" id="pick-{e(r["run_id"])}" '
                 f'aria-label="compare {e(r["run_id"])}">'), run_link(r["run_id"]), e(r["created_at"]),
                 e(fmt(r["task"])), e(fmt(r["epochs_run"])), metrics_text(r["metrics"]),
                 e((r.get("config_path") or "-").rsplit("/", 1)[-1])) for r in runs]
        body = ('<form action="/runs/compare" method="get">'
                + table(["Compare", "Run", "Created", "Task", "Epochs", "Final metrics", "Config"], rows,
                        caption="Newest first", cls="runs")
                + '<button type="submit">Compare selected runs</button></form>')
    return page("Runs", body, section="runs", api="/api/runs")


def compare_page(doc: dict[str, Any]) -> str:
    metric, entries = doc["metric"], doc["runs"]
    base = metric.removeprefix("val_")
    keys = [metric] if metric.startswith("val_") else [base, f"val_{base}"]
    lines = [(f"{run_id[-6:]} {k}", list(zip(s["epoch"], s[k]))) for run_id, s in doc["series"].items() for k in keys]
    body = f'<section aria-label="Curves" class="charts">{line_chart(lines, title=metric, width=760)}</section>'
    names: list[str] = []
    for entry in entries:
        names += [k for k in entry["metrics"] if k not in names]
    body += "<h2>Final metrics</h2>" + table(
        ["Run", "Epochs", *map(e, names), "Config sha256", "Data sha256"],
        [(run_link(x["run_id"]), e(fmt(x["epochs_run"])), *(e(fmt(x["metrics"].get(k))) for k in names),
          f'<code>{e((x["config_sha256"] or "-")[:12])}</code>', f'<code>{e((x["data_sha256"] or "-")[:12])}</code>')
         for x in entries], cls="final")
    differ = doc["params_differ"]
    body += "<h2>Params that differ</h2>" + (
        table(["Param", *(run_link(x["run_id"]) for x in entries)],
              [(f"<code>{e(k)}</code>", *(e(fmt(v)) for v in values)) for k, values in differ.items()],
              cls="params")
        if differ else "<p class=muted>The same in every run.</p>")
    api = "/api/runs/compare?" + "&".join(f"run={q(x['run_id'])}" for x in entries) + f"&metric={q(metric)}"
    return page(f"Compare {len(entries)} runs", body, section="runs", api=api, crumbs='<a href="/runs">Runs</a> / ')


def run_page(doc: dict[str, Any]) -> str:
    lin = doc.get("lineage") or {}
    charts = [line_chart([(c["metric"], c["train"]), (f"val_{c['metric']}", c["validation"])], title=c["metric"])
              for c in doc["curves"]]
    body = f'<section aria-label="Curves" class="charts">{"".join(charts)}</section>' if charts else \
        "<p class=muted>No per-epoch history recorded.</p>"
    items = [("Created", e(doc.get("created_at"))), ("Task", e(fmt(doc.get("task")))),
             ("Epochs run", e(fmt(doc.get("epochs_run"))) + (" (stopped early)" if doc.get("stopped_early") else "")),
             ("Final epoch", e(fmt(doc.get("final_epoch")))), ("Register name", e(fmt(doc.get("register_name")))),
             ("Registered as", ", ".join(f'<a href="/models/{q(ref.split("@")[0])}/{q(ref.split("@")[1])}">{e(ref)}</a>'
                                         for ref in doc.get("registered_as") or []) or '<span class="muted">-</span>'),
             ("Config", f'<code>{e(lin.get("config_path"))}</code>'),
             ("Config sha256", f'<code>{e(lin.get("config_sha256"))}</code>'),
             ("Overrides", e(" ".join(lin.get("overrides") or []) or "-")),
             ("Git commit", e(fmt(lin.get("git_commit"))) + (" (dirty)" if lin.get("git_dirty") else "")),
             ("Seed", e(fmt(lin.get("seed")))), ("Wall time", e(f'{doc.get("wall_time_s") or 0:.1f} s'))]
    for f in lin.get("data_files") or []:
        items.append((f"Data ({f.get('role')})", (f'<code>{e(f.get("path"))}</code> sha256 <code>'
                                                  f'{e(str(f.get("sha256"))[:12])}</code>')))
    env = doc.get("environment") or {}
    items.append(("Environment", e(", ".join(f"{k} {v}" for k, v in env.items() if k != "platform"))))
    body += "<h2>Final metrics</h2>" + (table(["Metric", "Value"],
                                              [(e(k), e(fmt(v))) for k, v in (doc.get("metrics") or {}).items()])
                                        if doc.get("metrics") else "<p class=muted>None.</p>")
    body += "<h2>Details</h2>" + pairs(items)
    body += "<h2>Effective config</h2><pre><code>" + e(doc.get("config_toml") or json.dumps(doc.get("config"),
                                                                                            indent=2)) + "</code></pre>"
    return page(f"Run {doc['run_id']}", body, section="runs", api=f"/api/runs/{q(doc['run_id'])}",
                crumbs='<a href="/runs">Runs</a> / ')


# -- servers --------------------------------------------------------------------------------------------------
def servers_page(servers: list[dict[str, Any]]) -> str:
    if not servers:
        body = "<p>No detached servers running. See <code>maasctl serve --detach</code>.</p>"
    else:
        rows = []
        for s in servers:
            rate = s.get("requests_per_second")
            rows.append((e(s["id"]), f'<a href="{e(s["url"])}/v1/models">{e(s["url"])}</a>', e(s["status"]),
                         e(", ".join(s.get("refs") or s.get("models") or [])), e(s.get("backend")), e(s["pid"]),
                         e(s["started_at"]), e(fmt(s.get("requests_total"))),
                         e("-" if rate is None else f"{rate:.2f}/s")))
        body = table(["Id", "URL", "Status", "Serving", "Backend", "PID", "Started", "Requests", "Rate"], rows,
                     caption="The rate is measured between two loads of this page")
    return page("Servers", body, section="servers", api="/api/servers")


def error_page(status: int, message: str) -> str:
    title = {400: "Bad request", 401: "Token required", 404: "Not found", 405: "Method not allowed"}.get(status, "Error")
    hint = ('<p>Open this view with <code>?token=…</code> once (a cookie keeps it), or send '
            '<code>Authorization: Bearer …</code>.</p>' if status == 401 else "")
    body = f'<p role="alert">{e(message)}</p>{hint}<p><a href="/">Back to the models</a></p>'
    return page(f"{status} {title}", body, section="")
