"""`maasctl predict` end to end: real SavedModels, a real TF-Serving-protocol server on 127.0.0.1, real subprocesses.

The server is tests/tfserving_stub_server.py: only TF Serving's documented routes, answering with the real model,
counting requests. Predictions are compared with `tf.saved_model.load` of the same SavedModel (1e-6).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli
from tfserving_stub_server import StubServer

pytestmark = pytest.mark.tf

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]
META = {"task": "classification", "feature_names": FEATURES, "class_names": CLASSES}


@pytest.fixture(scope="module")
def pstore(models, tmp_path_factory):
    """A store holding the small model as iris@1 with feature and class names."""
    from maasctl.store import Store

    store = Store(tmp_path_factory.mktemp("predict") / "store")
    store.register(models["small"], "iris", meta=META)
    return store


@pytest.fixture(scope="module")
def stub(models, pstore):
    server = StubServer(models["small"], "iris", version=1, labels={"stable": 1}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def multi_stub(models):
    server = StubServer(models["multi"], "multi").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reference(tf, models):
    """The small model called directly through tf.saved_model.load."""
    fn = tf.saved_model.load(str(models["small"])).signatures["serving_default"]

    def call(x: np.ndarray) -> np.ndarray:
        return np.concatenate([fn(features=tf.constant(x[i:i + 8192], dtype=tf.float32))["output_0"].numpy()
                               for i in range(0, len(x), 8192)])

    return call


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return np.round(rng.normal(3, 2, size=(37, 4)), 3)


def write_csv(path: Path, x: np.ndarray, order=FEATURES) -> Path:
    idx = [FEATURES.index(n) for n in order]
    path.write_text(",".join(order) + "\n" + "".join(",".join(repr(float(v)) for v in r[idx]) + "\n" for r in x))
    return path


def predictions(stdout: str) -> np.ndarray:
    return np.array(json.loads(stdout)["predictions"], dtype=np.float64)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def holder():
    """A live process whose command line names maasctl, to stand in as a recorded server's pid."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "maasctl-test-server-holder"])
    yield proc
    proc.kill()
    proc.wait()


def record_server(store, stub_url: str, pid: int, server_id: str = "stub0001", models=("iris",)) -> Path:
    store.servers_dir.mkdir(parents=True, exist_ok=True)
    path = store.servers_dir / f"{server_id}.json"
    path.write_text(json.dumps({"id": server_id, "pid": pid, "url": stub_url, "models": list(models),
                                "refs": [f"{m}@1" for m in models], "started_at": "2026-01-01T00:00:00Z",
                                "log": ""}))
    return path


def test_url_recorded_server_and_local_agree_with_tensorflow(tmp_path, pstore, stub, reference, data, holder):
    # records with the columns shuffled: mapped by the feature names recorded with iris@1
    path = write_csv(tmp_path / "data.csv", data, order=[FEATURES[i] for i in (2, 0, 3, 1)])
    expected = reference(data.astype(np.float32))

    before = stub.predicts
    via_url = predictions(ok(run_cli("predict", "--url", stub.url, "--model", "iris", "--input", str(path),
                                     store=pstore.root)).stdout)
    assert stub.predicts == before + 1

    rec = record_server(pstore, stub.url, holder.pid)
    try:
        before = stub.predicts
        via_server = predictions(ok(run_cli("predict", "--input", str(path), store=pstore.root)).stdout)
        assert stub.predicts == before + 1  # it went to the recorded server
        forced = ok(run_cli("predict", "--local", "--model", "iris", "--input", str(path), store=pstore.root))
        assert stub.predicts == before + 1
        assert "in-process" in forced.stderr
    finally:
        rec.unlink()
    fallback = ok(run_cli("predict", "--model", "iris@1", "--input", str(path), "--batch-size", "5",
                          store=pstore.root))
    assert "no running server serves 'iris': loading iris@1 in-process" in fallback.stderr

    for got in (via_url, via_server, predictions(forced.stdout), predictions(fallback.stdout)):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_every_input_format_via_url(tmp_path, pstore, stub, reference, data):
    expected = reference(data.astype(np.float32))
    rows = data.tolist()
    shuffled = [{k: dict(zip(FEATURES, r))[k] for k in (FEATURES[3], FEATURES[1], FEATURES[0], FEATURES[2])}
                for r in rows]
    messy = (' petal_width , "sepal_length",sepal_width,  petal_length\r\n'
             + "".join(f'  {r[3]!r}\t, "{r[0]!r}" ,{r[1]!r},"{r[2]!r} "\r\n' for r in rows))
    files = {
        "rows.json": json.dumps(rows),
        "records.json": json.dumps(shuffled),
        "rows.jsonl": "\n".join(json.dumps(r) for r in rows) + "\n",
        "records.jsonl": "\n\n".join(json.dumps(r) for r in shuffled),
        "messy.csv": messy,
        "instances.json": json.dumps({"instances": rows}),
        "columnar.json": json.dumps({"inputs": {"features": rows}}),
        "rows.txt": "\n".join(json.dumps(r) for r in rows),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        args = ["predict", "--url", stub.url, "-m", "iris", "-i", str(tmp_path / name), "--batch-size", "8"]
        if name.endswith(".txt"):
            args += ["--input-format", "jsonl"]
        out = json.loads(ok(run_cli(*args, store=pstore.root)).stdout)
        got = out["outputs"] if name == "columnar.json" else out["predictions"]
        np.testing.assert_allclose(np.array(got), expected, atol=1e-6, rtol=0, err_msg=name)
    # stdin, format sniffed
    got = predictions(ok(run_cli("predict", "--url", stub.url, "-m", "iris", input=files["records.jsonl"],
                                 store=pstore.root)).stdout)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_output_formats_and_output_file(tmp_path, pstore, stub, reference, data):
    expected = reference(data.astype(np.float32))
    path = write_csv(tmp_path / "d.csv", data)
    lines = ok(run_cli("predict", "--url", stub.url, "-m", "iris@stable", "-i", str(path), "-f", "jsonl",
                       store=pstore.root)).stdout.splitlines()
    docs = [json.loads(x) for x in lines]
    assert len(docs) == len(data)
    np.testing.assert_allclose([d["output_0"] for d in docs], expected, atol=1e-6, rtol=0)
    assert [d["label"] for d in docs] == [CLASSES[i] for i in expected.argmax(axis=1)]
    out = tmp_path / "out.csv"
    proc = ok(run_cli("predict", "--url", stub.url, "-m", "iris", "-i", str(path), "-f", "csv", "-o", str(out),
                      store=pstore.root))
    assert proc.stdout == ""
    text = out.read_text().splitlines()
    assert text[0] == "p_setosa,p_versicolor,p_virginica,label,score"
    np.testing.assert_allclose([[float(c) for c in ln.split(",")[:3]] for ln in text[1:]], expected, atol=1e-6)
    table = ok(run_cli("predict", "--url", stub.url, "-m", "iris", "-i", str(path), "-f", "table",
                       store=pstore.root)).stdout
    assert CLASSES[int(expected[0].argmax())] in table and "label" in table


def test_latest_and_alias_are_pinned_to_the_version_the_metadata_names(tmp_path, pstore, stub, data):
    """`-m iris` (latest) or `-m iris@stable`: every chunk goes to /versions/1, so a version registered mid-run
    cannot end up mixed into one output; stderr says which version."""
    path = write_csv(tmp_path / "d.csv", data)
    for model in ("iris", "iris@stable"):
        start = len(stub.paths)
        proc = ok(run_cli("predict", "--url", stub.url, "-m", model, "-i", str(path), "-b", "10",
                          store=pstore.root))
        sent = [p for p in stub.paths[start:] if p.endswith(":predict")]
        assert sent == ["/v1/models/iris/versions/1:predict"] * 4, (model, sent)
        assert f"{model} is version 1 at {stub.url}: all requests go to iris@1" in proc.stderr, proc.stderr
    start = len(stub.paths)
    proc = ok(run_cli("predict", "--url", stub.url, "-m", "iris@1", "-i", str(path), store=pstore.root))
    assert stub.paths[start:][-1] == "/v1/models/iris/versions/1:predict" and "all requests go" not in proc.stderr


def test_an_unwritable_output_is_rejected_before_any_work(tmp_path, pstore, stub, data):
    """--output DIR (or in a missing folder): exit 2 at once, nothing asked of the server, no DIR.partial left."""
    path = write_csv(tmp_path / "d.csv", data)
    (tmp_path / "outdir").mkdir()
    cases = [(tmp_path / "outdir", "is a directory"), (tmp_path / "nowhere" / "p.json", "No such file or directory")]
    for out, message in cases:
        before = stub.requests
        proc = run_cli("predict", "--url", stub.url, "-m", "iris", "-i", str(path), "-o", str(out),
                       store=pstore.root)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"Error: --output {out}: ") and message in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and proc.stdout == ""
        assert stub.requests == before  # not even the metadata: the output was checked first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "outdir"]
    assert list((tmp_path / "outdir").iterdir()) == []


def test_a_pinned_version_that_goes_away_mid_run_fails_instead_of_mixing(tmp_path, pstore, stub, data):
    """The server moves `iris` to version 2 after the first chunk (as maasctl serve does when iris@2 is
    registered): the remaining chunks must not be answered by v2; the run stops with a clear NotFound."""
    import io

    import maasctl.predict.pipeline as predict
    from maasctl.errors import NotFound
    from maasctl.predict.inputs import InputSource
    from maasctl.predict.writers import JsonlWriter

    class MovesTheServer(JsonlWriter):
        def write(self, outputs, kept=None):
            stub.version = 2  # from now on only "version 2" (the same model here) is served
            super().write(outputs)

    target = predict.remote_target(stub.url, "iris", store=pstore)
    source = InputSource(str(write_csv(tmp_path / "d.csv", data)))
    start = len(stub.paths)
    try:
        with pytest.raises(NotFound, match=r"Specific\(iris, 1\).*; iris@1 stopped being served during the run "
                                           r"\(iris moved to a newer version\?\)"):
            predict.run_predict(target, source, MovesTheServer(io.StringIO(), target.schema), batch_size=5)
    finally:
        stub.version = 1
        source.close()
        target.close()
    sent = [p for p in stub.paths[start:] if p.endswith(":predict")]
    assert sent and set(sent) == {"/v1/models/iris/versions/1:predict"}


def test_plain_tf_serving_server_without_store_names(tmp_path, stub, reference, data):
    """No store entry: --model is required, and CSV columns are taken in the file's order (with a warning)."""
    empty = tmp_path / "empty-store"
    path = write_csv(tmp_path / "d.csv", data)
    proc = run_cli("predict", "--url", stub.url, "-i", str(path), store=empty)
    assert proc.returncode == 2
    assert f"--model is required: {stub.url} does not list its models" in proc.stderr
    proc = ok(run_cli("predict", "--url", stub.url, "-m", "iris", "-i", str(path), store=empty))
    assert "file's order" in proc.stderr
    np.testing.assert_allclose(predictions(proc.stdout), reference(data.astype(np.float32)), atol=1e-6, rtol=0)


def test_multi_input_model_via_url(tmp_path, multi_stub):
    recs = [{"a": [1.0, 2.0], "s": "abc"}, {"s": "hello", "a": [0.5, -1.0]}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    out = json.loads(ok(run_cli("predict", "--url", multi_stub.url, "-m", "multi", "-i", str(tmp_path / "m.jsonl"),
                                store=tmp_path / "s")).stdout)
    assert out == {"predictions": [{"len": 3, "sum": 8.0}, {"len": 5, "sum": -2.0}]}


BAD = [
    ("ragged.json", json.dumps([[1, 2, 3, 4], [1, 2, 3]]), "row 2: 3 values, the model takes 4"),
    ("wide.csv", ",".join(FEATURES) + "\n1,2,3,4\n1,2,3,4,5\n", "row 2 (line 3): 5 fields, the header has 4"),
    ("text.csv", ",".join(FEATURES) + "\n1,2,3,4\n1,2,x,4\n", "row 2 (line 3): column 'petal_length': 'x' is not a number"),
    ("dtype.jsonl", "[1, 2, 3, 4]\n[1, 2, \"3\", 4]\n", "row 2: column 'petal_length': '3' is not a number"),
    ("missing.json", json.dumps([dict(zip(FEATURES[:3], [1, 2, 3]))]), "row 1: missing field 'petal_width'"),
    ("header.csv", "a,b,c,d\n1,2,3,4\n", "line 1 (header): missing column 'sepal_length'"),
    ("body.json", json.dumps({"instances": [[1, 2, 3, 4], [1, 2, 3]]}), "input 'features': expected shape [4]"),
]


def test_bad_input_exits_2_and_sends_nothing(tmp_path, pstore, stub):
    for name, text, message in BAD:
        (tmp_path / name).write_text(text)
        before = stub.requests, stub.predicts
        proc = run_cli("predict", "--url", stub.url, "-m", "iris", "-i", str(tmp_path / name), store=pstore.root)
        assert proc.returncode == 2, (name, proc.stderr)
        assert proc.stderr.startswith("Error: ") and message in proc.stderr, (name, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stdout == ""
        assert stub.predicts == before[1], name
    # a bad row in the last of many chunks: the whole file is checked first, nothing is sent
    big = tmp_path / "late.csv"
    big.write_text(",".join(FEATURES) + "\n" + "1,2,3,4\n" * 500 + "1,2,3,oops\n")
    out = tmp_path / "out.json"
    before = stub.predicts
    proc = run_cli("predict", "--url", stub.url, "-m", "iris", "-i", str(big), "-b", "10", "-o", str(out),
                   store=pstore.root)
    assert proc.returncode == 2 and "row 501 (line 502): column 'petal_width': 'oops' is not a number" in proc.stderr
    assert stub.predicts == before
    assert not out.exists() and not list(tmp_path.glob("out.json*"))
    late_json = tmp_path / "late.json"
    late_json.write_text(json.dumps([[1, 2, 3, 4]] * 500 + [[1, 2, 3, None]]))
    proc = run_cli("predict", "--url", stub.url, "-m", "iris", "-i", str(late_json), "-b", "10", store=pstore.root)
    assert proc.returncode == 2 and "row 501: column 'petal_width': null is not a number" in proc.stderr
    assert stub.predicts == before and proc.stdout == ""


EMPTY = [
    ("header.csv", ",".join(FEATURES) + "\n", "no rows in {path} (only a header line; nothing to predict)"),
    ("none.json", "[]", "no rows in {path} (the input is empty; nothing to predict)"),
    ("blank.jsonl", "\n\n", "no rows in {path} (the input is empty; nothing to predict)"),
    ("instances.json", '{"instances": []}', "no rows in {path}: 'instances' is empty (nothing to predict)"),
    ("inputs.json", '{"inputs": {"features": []}}', "no rows in {path}: the batch in 'inputs' is empty (nothing to predict)"),
]


def test_an_input_without_rows_exits_2_and_sends_nothing(tmp_path, pstore, stub):
    """Zero rows is a mistake (an empty export, a truncated file): one line, exit 2, nothing sent; it used to
    reach TensorFlow and print its multi-line InvalidArgumentError."""
    for name, text, message in EMPTY:
        path = tmp_path / name
        path.write_text(text)
        before = stub.predicts
        proc = run_cli("predict", "--url", stub.url, "-m", "iris", "-i", str(path), "-o", str(tmp_path / "o.json"),
                       store=pstore.root)
        assert proc.returncode == 2 and proc.stderr == f"Error: {message.format(path=path)}\n", (name, proc.stderr)
        assert stub.predicts == before, name
    proc = run_cli("predict", "--local", "-m", "iris", "-i", str(tmp_path / "instances.json"), store=pstore.root)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == f"Error: no rows in {tmp_path / 'instances.json'}: 'instances' is empty " \
                                           f"(nothing to predict)" and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("o.json*"))


def test_stdin_is_checked_chunk_by_chunk(pstore, stub):
    """stdin cannot be read twice: chunks before the bad one were sent, the bad one and later ones were not."""
    text = ",".join(FEATURES) + "\n" + "1,2,3,4\n" * 4 + "1,2,3\n" + "1,2,3,4\n" * 4
    before = stub.predicted_rows
    proc = run_cli("predict", "--url", stub.url, "-m", "iris", "-b", "2", "-f", "jsonl", input=text,
                   store=pstore.root)
    assert proc.returncode == 2 and "<stdin>: row 5 (line 6): 3 fields, the header has 4" in proc.stderr
    assert stub.predicted_rows - before <= 4


def test_a_fifo_is_streamed_once_not_rewound(tmp_path, pstore, stub, reference, monkeypatch):
    """A named pipe (or <(...)) has a path but cannot be read twice: past the cache budget the checking pass
    used to end in `rewind` -> UnsupportedOperation after reading everything. It must stream chunk by chunk."""
    import io
    import threading

    import maasctl.predict.pipeline as predict
    from maasctl.predict.inputs import InputSource
    from maasctl.predict.writers import make_writer

    monkeypatch.setattr(predict, "CACHE_BUDGET", 0)  # what a >64 MB input does, with 300 rows
    x = np.round(np.random.default_rng(3).uniform(-5, 5, size=(300, 4)), 3)
    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    feeder = threading.Thread(target=lambda: write_csv(fifo, x), daemon=True)
    feeder.start()
    source = InputSource(str(fifo))
    assert not source.rewindable
    target = predict.remote_target(stub.url, "iris", store=pstore)
    out = io.StringIO()
    try:
        summary = predict.run_predict(target, source, make_writer("json", out, target.schema), batch_size=64)
    finally:
        source.close()
        target.close()
        feeder.join(5)
    assert summary.rows == 300 and not summary.checked_first
    np.testing.assert_allclose(predictions(out.getvalue()), reference(x.astype(np.float32)), atol=1e-6, rtol=0)


def test_server_errors_are_reported(tmp_path, pstore, stub):
    path = write_csv(tmp_path / "d.csv", np.ones((2, 4)))
    proc = run_cli("predict", "--url", stub.url, "-m", "iris@7", "-i", str(path), store=pstore.root)
    assert proc.returncode == 3 and "Servable not found for request: Specific(iris, 7)" in proc.stderr
    proc = run_cli("predict", "--url", stub.url, "-m", "iris@prod", "-i", str(path), store=pstore.root)
    assert proc.returncode == 2 and "Unrecognized servable version label: prod" in proc.stderr
    proc = run_cli("predict", "--url", stub.url, "-m", "iris", "--signature", "nope", "-i", str(path),
                   store=pstore.root)
    assert proc.returncode == 2 and "model has no signature 'nope' (available: " in proc.stderr


def test_connection_refused_retries_then_exit_1(tmp_path, pstore):
    path = write_csv(tmp_path / "d.csv", np.ones((2, 4)))
    with socket.socket() as s:  # bound, not listening, held: refused, and no one else can take the port
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        proc = run_cli("predict", "--url", url, "-m", "iris", "-i", str(path), store=pstore.root)
    assert proc.returncode == 1
    assert f"Error: cannot reach {url}: connection refused (5 attempts" in proc.stderr


def test_ambiguous_servers_are_listed(tmp_path, pstore, stub, holder):
    recs = [record_server(pstore, stub.url, holder.pid, "aaaa1111"), record_server(pstore, stub.url, holder.pid,
                                                                                  "bbbb2222")]
    try:
        path = write_csv(tmp_path / "d.csv", np.ones((2, 4)))
        proc = run_cli("predict", "-m", "iris", "-i", str(path), store=pstore.root)
        assert proc.returncode == 2
        assert "served by 2 running servers: aaaa1111 at" in proc.stderr and "bbbb2222 at" in proc.stderr
        proc = run_cli("predict", "-i", str(path), store=pstore.root)
        assert proc.returncode == 2 and "2 servers are running" in proc.stderr
    finally:
        for r in recs:
            r.unlink()
    proc = run_cli("predict", "-i", str(path), store=pstore.root)
    assert proc.returncode == 2 and "no --model given and no maasctl server is running" in proc.stderr


ROWS_BIG = int(os.environ.get("MAASCTL_TEST_BIG_ROWS", "1000000"))

_MEASURE = textwrap.dedent("""
    import resource, subprocess, sys
    proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    sys.stderr.write(proc.stderr)
    print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
""")


def _peak_rss_kib(args: list[str], env: dict[str, str]) -> int:
    proc = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "maasctl", *args],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=600, cwd=REPO, check=False)
    code, rss = proc.stdout.split()
    assert code == "0", proc.stderr
    return int(rss)


@pytest.mark.slow
def test_million_row_csv_streams_in_bounded_memory_and_order(tmp_path, pstore, stub, reference):
    rng = np.random.default_rng(11)
    x = np.round(rng.uniform(-5, 5, size=(ROWS_BIG, 4)), 4)
    big = tmp_path / "big.csv"
    with open(big, "w") as f:
        f.write(",".join(FEATURES) + "\n")
        for i in range(0, len(x), 100_000):
            block = x[i:i + 100_000]
            f.write("\n".join(",".join(map(repr, r)) for r in block.tolist()) + "\n")
    small = tmp_path / "small.csv"
    write_csv(small, x[:1000])
    env = {"MAASCTL_HOME": str(pstore.root)}
    common = ["predict", "--url", stub.url, "-m", "iris", "-f", "csv"]
    base = _peak_rss_kib([*common, "-i", str(small), "-o", str(tmp_path / "small.out")], env)
    out = tmp_path / "big.out"
    before = stub.predicted_rows
    peak = _peak_rss_kib([*common, "-i", str(big), "-o", str(out)], env)
    assert stub.predicted_rows - before == ROWS_BIG
    growth_mib = (peak - base) / 1024
    print(f"peak RSS {peak / 1024:.0f} MiB, baseline {base / 1024:.0f} MiB, growth {growth_mib:.0f} MiB")
    assert growth_mib < 200
    text = out.read_text()
    header, _, body = text.partition("\n")
    assert header == "p_setosa,p_versicolor,p_virginica,label,score"
    cells = body.replace("\n", ",").split(",")[:-1]
    got = np.array(cells, dtype=object).reshape(ROWS_BIG, 5)[:, :3].astype(np.float64)
    np.testing.assert_allclose(got, reference(x.astype(np.float32)), atol=1e-6, rtol=0)


def test_against_a_real_maasctl_serve(tmp_path, pstore, reference, data):
    """The real server, found through its record in the store (skipped while `maasctl serve` is not there)."""
    from maasctl.cli import app

    if "serve" not in {c.name for c in app.registered_commands}:
        pytest.skip("maasctl serve is not available")
    started = run_cli("serve", "iris", "--port", "0", "--detach", store=pstore.root)
    assert started.returncode == 0, started.stderr
    try:
        path = write_csv(tmp_path / "d.csv", data, order=list(reversed(FEATURES)))
        via_record = ok(run_cli("predict", "-i", str(path), store=pstore.root))
        via_url = ok(run_cli("predict", "--url", started.stdout.strip(), "-i", str(path), "-f", "jsonl",
                             store=pstore.root))
    finally:
        run_cli("stop", "--all", store=pstore.root)
    expected = reference(data.astype(np.float32))
    np.testing.assert_allclose(predictions(via_record.stdout), expected, atol=1e-6, rtol=0)
    docs = [json.loads(x) for x in via_url.stdout.splitlines()]
    np.testing.assert_allclose([d["output_0"] for d in docs], expected, atol=1e-6, rtol=0)
    assert [d["label"] for d in docs] == [CLASSES[i] for i in expected.argmax(axis=1)]
