"""`maasctl ui` over real HTTP on 127.0.0.1: pages and their /api JSON, 404s, the token, read-only, servers.

The store holds real SavedModels (the session's tiny models); runs are records with a known history. The browser
checks are in test_ui_browser.py.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest
import requests
from conftest import run_cli, tree_snapshot

from maasctl.serving.server import ServerThread
from maasctl.training.runs import commit_run, write_record
from maasctl.ui.app import UiApp
from maasctl.ui.data import requests_total
from maasctl.ui.svg import line_chart

RUN = "20261123-120000-aaaaaa"
EPOCHS = 7


def history(epochs: int = EPOCHS) -> list[dict]:
    return [{"epoch": e, "loss": 1.0 / e, "accuracy": 1 - 0.5 / e, "val_loss": 1.1 / e, "val_accuracy": 1 - 0.6 / e}
            for e in range(1, epochs + 1)]


def add_run(store, run_id: str = RUN, epochs: int = EPOCHS, lr: float = 0.01) -> None:
    with store.staging() as staged:
        (staged / "model").mkdir()
        hist = history(epochs)
        write_record(staged, {
            "run_id": run_id, "created_at": "2026-11-23T12:00:00Z", "task": "classification",
            "feature_names": ["a", "b", "c", "d"], "class_names": ["x", "y", "z"],
            "metrics": {k: v for k, v in hist[-1].items() if k != "epoch"}, "history": hist, "epochs_run": epochs,
            "params": {"train": {"epochs": epochs, "learning_rate": lr}, "model": {"task": "classification"},
                       "register": {"name": "blobs"}},
            "lineage": {"run_id": run_id, "config_path": "/cfg/blobs.toml", "config_sha256": "c" * 64, "seed": 7},
            "environment": {"python": "3.11"}})
        commit_run(store, staged, run_id)


@pytest.fixture
def filled(store, models):
    """blobs@1 (production, then moved), blobs@2 (candidate), other@1, and one run."""
    store.register(models["small"], "blobs", aliases=["production"], meta={"lineage": {"run_id": RUN},
                                                                         "metrics": {"accuracy": 0.93}})
    store.register(models["small_b"], "blobs", aliases=["candidate"])
    store.set_alias("blobs@2", "production")
    store.set_alias("blobs@1", "production")
    store.register(models["multi"], "other")
    add_run(store)
    return store


@pytest.fixture
def view(filled):
    server = ServerThread(UiApp(filled)).start()
    yield server.url, filled
    server.stop()


def test_pages_and_their_json(view):
    url, _ = view
    models = requests.get(url + "/api/models", timeout=10).json()
    assert [(m["name"], m["latest"], m["aliases"]) for m in models] == [
        ("blobs", 2, {"candidate": 2, "production": 1}), ("other", 1, {})]
    html = requests.get(url + "/", timeout=10).text
    assert 'href="/models/blobs"' in html and 'href="/models/other"' in html

    doc = requests.get(url + "/api/models/blobs", timeout=10).json()
    assert [v["ref"] for v in doc["versions"]] == ["blobs@2", "blobs@1"] and doc["aliases"]["production"] == 1
    assert [(h["from_version"], h["to_version"]) for h in doc["alias_history"]["production"]] == [
        (None, 1), (1, 2), (2, 1)]
    r = requests.get(url + "/models/blobs", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"] and "<script" not in r.text
    assert 'href="/models/blobs/1"' in r.text and 'href="/models/blobs/2"' in r.text
    assert f'href="/runs/{RUN}"' in r.text  # lineage: the version links to its run
    assert "None → 1" not in r.text and "- → 1" in r.text and "2 → 1" in r.text

    v = requests.get(url + "/api/models/blobs/1", timeout=10).json()
    assert v["ref"] == "blobs@1" and v["aliases"] == ["production"] and v["metrics"] == {"accuracy": 0.93}
    assert v["signatures"]["serving_default"]["inputs"]["features"]["dtype"] == "float32"
    assert v["files"] >= 2 and v["size"] > 0 and v["registered_at"] and v["registered_from"]
    page = requests.get(url + "/models/blobs/1", timeout=10).text
    assert "serving_default" in page and "features" in page and "float32" in page

    runs = requests.get(url + "/api/runs", timeout=10).json()
    assert [r["run_id"] for r in runs] == [RUN]
    run = requests.get(url + f"/api/runs/{RUN}", timeout=10).json()
    assert [c["metric"] for c in run["curves"]] == ["loss", "accuracy"]
    assert run["curves"][0]["validation"] == [[h["epoch"], h["val_loss"]] for h in history()]
    assert 'learning_rate = 0.01' in run["config_toml"]
    assert run["registered_as"] == ["blobs@1"]  # blobs@1's lineage names the run
    page = requests.get(url + f"/runs/{RUN}", timeout=10).text
    polylines = re.findall(r'<polyline fill="none" points="([^"]*)"', page)
    assert len(polylines) == 4 and all(len(p.split()) == EPOCHS for p in polylines)
    assert "[train]" in page and "learning_rate = 0.01" in page and 'href="/models/blobs/1">blobs@1</a>' in page
    assert requests.get(url + "/api/servers", timeout=10).json() == []
    head = requests.head(url + "/models/blobs", timeout=10)
    assert head.status_code == 200 and head.content == b""


def test_compare_page_and_json(view):
    url, store = view
    other = "20261123-130000-bbbbbb"
    add_run(store, other, epochs=4, lr=0.05)
    doc = requests.get(url + f"/api/runs/compare?run={RUN}&run={other}&metric=accuracy", timeout=10).json()
    assert doc["params_differ"] == {"train.epochs": [EPOCHS, 4], "train.learning_rate": [0.01, 0.05]}
    assert doc["series"][other]["epoch"] == [1, 2, 3, 4] and doc["metric"] == "accuracy"
    page = requests.get(url + f"/runs/compare?run={RUN}&run={other}", timeout=10)
    assert page.status_code == 200
    counts = [len(p.split()) for p in re.findall(r'<polyline fill="none" points="([^"]*)"', page.text)]
    assert counts == [EPOCHS, EPOCHS, 4, 4]  # loss and val_loss of each run
    params = re.search(r'<table class="params">(.*?)</table>', page.text).group(1)
    assert re.findall(r"<td><code>([^<]*)</code></td>", params) == ["train.epochs", "train.learning_rate"]
    runs_page = requests.get(url + "/runs", timeout=10).text
    assert '<form action="/runs/compare" method="get">' in runs_page and runs_page.count('type="checkbox"') == 2
    one = requests.get(url + f"/runs/compare?run={RUN}", timeout=10)
    assert one.status_code == 400 and "at least two" in one.text
    assert requests.get(url + f"/api/runs/compare?run={RUN}&run=nope", timeout=10).status_code == 404
    bad = requests.get(url + f"/api/runs/compare?run={RUN}&run={other}&metric=auc", timeout=10)
    assert bad.status_code == 400 and "--metric 'auc'" in bad.json()["error"]


def test_unknown_things_are_404_pages_never_tracebacks(view):
    url, _ = view
    for path in ["/models/nope", "/models/blobs/9", "/models/blobs/latest", "/models/blobs/²", "/models/Bad%20Name",
                 "/models/..%2F..%2Fetc", f"/runs/{RUN[:-1]}x", "/runs/..%2Fmodels", "/runs/.hidden", "/nowhere",
                 "/models/blobs/1/extra", "/models/blobs/99999999999999999999999"]:
        r = requests.get(url + path, timeout=10)
        assert r.status_code == 404, (path, r.text)
        assert r.headers["content-type"].startswith("text/html") and "404 Not found" in r.text
        assert "Traceback" not in r.text
        api = requests.get(url + "/api" + path, timeout=10)
        assert api.status_code == 404 and set(api.json()) == {"error"}, path
    assert "model 'blobs' has no version 9" in requests.get(url + "/api/models/blobs/9", timeout=10).json()["error"]


def test_read_only(view):
    url, store = view
    before = tree_snapshot(store.root)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = requests.request(method, url + "/api/models/blobs", timeout=10)
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    for path in ("/", "/models/blobs", "/models/blobs/2", "/runs", f"/runs/{RUN}", "/servers", "/api/servers"):
        assert requests.get(url + path, timeout=10).status_code == 200
    assert tree_snapshot(store.root) == before


def test_token_guards_every_page_and_api(filled):
    server = ServerThread(UiApp(filled, token="s3cret-token")).start()
    try:
        url = server.url
        paths = ["/", "/models/blobs", "/models/blobs/1", "/runs", f"/runs/{RUN}", "/servers", "/api/models",
                 "/api/models/blobs", "/api/runs", f"/api/runs/{RUN}", "/api/servers", "/models/nope", "/favicon.ico"]
        for path in paths:
            r = requests.get(url + path, timeout=10, allow_redirects=False)
            assert r.status_code == 401, path
            assert "blobs@" not in r.text and r.headers["www-authenticate"] == "Bearer"
            bad = requests.get(url + path, headers={"Authorization": "Bearer wrong"}, timeout=10)
            assert bad.status_code == 401
            ok = requests.get(url + path, headers={"Authorization": "bearer s3cret-token"}, timeout=10)
            assert ok.status_code == (404 if path in ("/models/nope", "/favicon.ico") else 200), path
        assert requests.get(url + "/?token=wrong", timeout=10).status_code == 401
        # a browser: ?token= once -> an HttpOnly cookie and a redirect that drops the token from the address
        with requests.Session() as s:
            r = s.get(url + "/models/blobs?token=s3cret-token", timeout=10, allow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/models/blobs"
            assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
            assert "s3cret-token" not in r.headers["set-cookie"]  # a digest, not the token
            assert s.get(url + "/models/blobs", timeout=10).status_code == 200
            assert s.get(url + "/api/runs", timeout=10).json()[0]["run_id"] == RUN
        forged = requests.get(url + "/", cookies={"maasctl_ui_token": "s3cret-token"}, timeout=10)
        assert forged.status_code == 401
    finally:
        server.stop()


def test_svg_chart_points_and_escaping():
    svg = line_chart([("loss", [(1, 0.5), (2, 0.25), (3, 0.125)]), ("val <x>", [(1, 0.6), (2, 0.3)]),
                      ("empty", [])], title="loss & more")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    groups = re.findall(r'data-label="([^"]*)" data-points="(\d+)"><polyline fill="none" points="([^"]*)"', svg)
    assert [(label, int(n), len(p.split())) for label, n, p in groups] == [("loss", 3, 3), ("val &lt;x&gt;", 2, 2)]
    assert "loss &amp; more" in svg and "<x>" not in svg
    xs = [float(pt.split(",")[0]) for pt in groups[0][2].split()]
    ys = [float(pt.split(",")[1]) for pt in groups[0][2].split()]
    assert xs == sorted(xs) and ys == sorted(ys)  # epochs left to right; a falling loss goes down the page
    assert "no data" in line_chart([("x", [])], title="t")


def test_requests_total_parses_prometheus_text():
    text = ('# TYPE maasctl_requests_total counter\n'
            'maasctl_requests_total{model="a",version="1",api="predict",code="200"} 5\n'
            'maasctl_requests_total{model="a",version="1",api="predict",code="400"} 2\n'
            'maasctl_request_latency_seconds_count{model="a",api="predict"} 7\n')
    assert requests_total(text) == 7.0


def test_servers_page_shows_status_and_request_rate(filled, tmp_path):
    """A real serving app on 127.0.0.1 with a detached-server record: status from /readyz, rate from /metrics."""
    from maasctl.refs import parse_ref
    from maasctl.serving import records
    from maasctl.serving.server import ServeOptions, build_app
    from maasctl.tf.servable import store_loader

    serving = ServerThread(build_app(filled, [parse_ref("blobs@production")], ServeOptions(),
                                     loader=store_loader(filled))).start()
    serving.app.start()
    serving.wait_ready()
    # the record's pid must be a live process whose command line names maasctl (as a real detached server's does)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "maasctl"])
    view = ServerThread(UiApp(filled)).start()
    try:
        records.write_record(filled, "abcd1234", url=serving.url, models=["blobs"], refs=["blobs@production"],
                             pid=holder.pid)
        first = requests.get(view.url + "/api/servers", timeout=10).json()
        assert [(s["id"], s["status"], s["requests_per_second"]) for s in first] == [("abcd1234", "ready", None)]
        for _ in range(5):
            r = requests.post(serving.url + "/v1/models/blobs:predict", json={"instances": [[1, 2, 3, 4]]}, timeout=10)
            assert r.status_code == 200
        second = requests.get(view.url + "/api/servers", timeout=10).json()[0]
        assert second["requests_total"] - first[0]["requests_total"] == 5 and second["requests_per_second"] > 0
        page = requests.get(view.url + "/servers", timeout=10).text
        assert "abcd1234" in page and "ready" in page and serving.url in page
        holder.kill()
        holder.wait()
        assert requests.get(view.url + "/api/servers", timeout=10).json() == []
        assert records.record_path(filled, "abcd1234").exists()  # the view never prunes; `ps` does
    finally:
        holder.kill()
        view.stop()
        serving.stop()
        serving.app.manager.stop()


def test_cli_ui_serves_and_stops(filled, store_path):
    proc = subprocess.Popen([sys.executable, "-m", "maasctl", "--store", str(store_path), "ui", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        assert requests.get(url + "api/models", timeout=10).json()[0]["name"] == "blobs"
        assert requests.get(url + "models/nope", timeout=10).status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "ui stopped" in proc.stderr.read()
    finally:
        proc.kill()
    r = run_cli("ui", "--port", "70000", store=store_path)
    assert r.returncode == 2 and r.stderr.startswith("Error: --port must be between") and not r.stdout


def test_view_of_an_s3_store(s3_store_url, models):
    """The same pages from an S3 store (real moto server): versions, aliases with who moved them, 404s."""
    from maasctl.store.base import open_store

    store = open_store(s3_store_url)
    store.register(models["small"], "blobs", aliases=["production"])
    store.register(models["small_b"], "blobs")
    store.set_alias("blobs@2", "production")
    server = ServerThread(UiApp(store)).start()
    try:
        doc = requests.get(server.url + "/api/models/blobs", timeout=30).json()
        assert [v["ref"] for v in doc["versions"]] == ["blobs@2", "blobs@1"] and doc["aliases"] == {"production": 2}
        moves = doc["alias_history"]["production"]
        assert [(m["from_version"], m["to_version"]) for m in moves] == [(None, 1), (1, 2)]
        assert all(m["who"] and "@" in m["who"] for m in moves)  # S3 events record user@host
        page = requests.get(server.url + "/models/blobs", timeout=30).text
        assert "1 → 2 by " in page and 'href="/models/blobs/2"' in page
        version = requests.get(server.url + "/api/models/blobs/1", timeout=30).json()
        assert version["registered_by"] and version["signatures"]["serving_default"]["inputs"]
        assert requests.get(server.url + "/models/nope", timeout=30).status_code == 404
        assert requests.get(server.url + "/models/blobs/7", timeout=30).status_code == 404
    finally:
        server.stop()
