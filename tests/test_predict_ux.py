"""`maasctl predict` as a new user meets it (issue 11): which model answers, extra columns, single records,
output formats from the extension, CSV headers, --json. Real SavedModels, a real TF-Serving-protocol server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli
from test_predict import (  # noqa: F401
    CLASSES,
    FEATURES,
    META,
    data,
    holder,
    ok,
    predictions,
    pstore,
    record_server,
    reference,
    stub,
    write_csv,
)
from tfserving_stub_server import StubServer

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def two_versions(models, tmp_path_factory):
    """A store with iris@1 (small) and iris@2 (small_b, alias production) and a server serving only iris@2."""
    from maasctl.store import Store

    store = Store(tmp_path_factory.mktemp("two") / "store")
    store.register(models["small"], "iris", meta=META)
    store.register(models["small_b"], "iris", meta=META, aliases=["production"])
    server = StubServer(models["small_b"], "iris", version=2, labels={"production": 2}).start()
    yield store, server
    server.stop()


def test_model_ref_is_resolved_in_the_store_and_a_server_used_only_if_it_serves_that_version(
        tmp_path, two_versions, holder, tf, models, data):  # noqa: F811
    store, server = two_versions
    path = write_csv(tmp_path / "d.csv", data)
    record_server(store, server.url, holder.pid, models=("iris",))
    x = tf.constant(data.astype(np.float32))
    want = {v: tf.saved_model.load(str(models[m])).signatures["serving_default"](features=x)["output_0"].numpy()
            for v, m in ((1, "small"), (2, "small_b"))}

    before = server.predicts
    proc = ok(run_cli("predict", "-m", "iris@1", "-i", str(path), store=store.root))
    assert server.predicts == before  # the server serves only iris@2: in-process
    assert (f"server stub0001 at {server.url} does not serve iris@1 (it serves iris@2): loading iris@1 "
            f"in-process") in proc.stderr, proc.stderr
    np.testing.assert_allclose(predictions(proc.stdout), want[1], atol=1e-6)

    proc = ok(run_cli("predict", "-m", "iris@production", "-i", str(path), store=store.root))
    assert server.predicts == before + 1
    assert f"predicting with iris@production (= iris@2) on server stub0001 at {server.url}" in proc.stderr
    np.testing.assert_allclose(predictions(proc.stdout), want[2], atol=1e-6)

    for ref, message in (("iris@staging", "model 'iris' has no alias 'staging'"),
                         ("iris@99", "has no version 99 (latest is 2)")):
        proc = run_cli("predict", "-m", ref, "-i", str(path), store=store.root)
        assert proc.returncode == 3 and proc.stderr.startswith("Error: ") and message in proc.stderr, proc.stderr
        assert "HTTP" not in proc.stderr and proc.stdout == ""
    assert server.predicts == before + 1


@pytest.fixture(scope="module")
def lstore(models, tmp_path_factory):
    """iris@1 as `train` records it: feature and class names, and the training data's label column."""
    from maasctl.store import Store

    store = Store(tmp_path_factory.mktemp("label") / "store")
    store.register(models["small"], "iris", meta={**META, "params": {"data": {"label": "species"}}})
    return store


def test_extra_columns_label_ignored_keep_passed_through_others_warned_once(
        tmp_path, lstore, stub, reference, data):  # noqa: F811
    expected = reference(data.astype(np.float32))
    order = [FEATURES[i] for i in (3, 1, 0, 2)]
    lines = ["id,species," + ",".join(order) + ",notes"]
    for i, row in enumerate(data):
        lines.append(f"r{i},setosa," + ",".join(repr(float(row[FEATURES.index(n)])) for n in order) + ",x")
    path = tmp_path / "train.csv"
    path.write_text("\n".join(lines) + "\n")
    args = ["predict", "--url", stub.url, "-m", "iris", "-i", str(path)]

    proc = ok(run_cli(*args, "-f", "csv", "--keep", "id", "-b", "10", store=lstore.root))
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings == [(f"warning: {path}: ignoring columns the model does not take: 'notes' "
                        f"(pass --keep notes to copy them to the output)")], proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "id,p_setosa,p_versicolor,p_virginica,label,score"
    assert [ln.split(",")[0] for ln in out[1:]] == [f"r{i}" for i in range(len(data))]
    np.testing.assert_allclose([[float(c) for c in ln.split(",")[1:4]] for ln in out[1:]], expected, atol=1e-6)

    # JSON Lines with an id field: kept as the first key; without --keep, one warning and the predictions
    records = tmp_path / "recs.jsonl"
    records.write_text("".join(json.dumps({"id": i, **dict(zip(FEATURES, map(float, row)))}) + "\n"
                               for i, row in enumerate(data)))
    docs = [json.loads(x) for x in ok(run_cli("predict", "--url", stub.url, "-m", "iris", "-i", str(records),
                                              "-f", "jsonl", "--keep", "id", store=lstore.root)).stdout.splitlines()]
    assert [next(iter(d)) for d in docs] == ["id"] * len(data) and [d["id"] for d in docs] == list(range(len(data)))
    proc = ok(run_cli("predict", "--url", stub.url, "-m", "iris", "-i", str(records), store=lstore.root))
    assert proc.stderr.count("warning:") == 1 and "ignoring fields the model does not take: 'id'" in proc.stderr
    np.testing.assert_allclose(predictions(proc.stdout), expected, atol=1e-6)

    before = stub.predicts
    for extra, message in ((["--keep", "nope", "-f", "csv"], "--keep nope: no such column"),
                           (["--keep", "id"], "the json format is TF Serving's response body")):
        proc = run_cli(*args, *extra, store=lstore.root)
        assert proc.returncode == 2 and message in proc.stderr and proc.stdout == "", proc.stderr
    assert stub.predicts == before


def test_one_json_record_on_stdin_is_one_row(pstore, stub, reference, data):  # noqa: F811
    record = json.dumps(dict(zip(FEATURES, map(float, data[0]))))
    proc = ok(run_cli("predict", "--url", stub.url, "-m", "iris", input=record + "\n", store=pstore.root))
    np.testing.assert_allclose(predictions(proc.stdout), reference(data[:1].astype(np.float32)), atol=1e-6)


def test_output_format_follows_the_extension_and_an_unknown_one_fails_first(tmp_path, pstore, stub, data):  # noqa: F811
    path = write_csv(tmp_path / "d.csv", data)
    args = ["predict", "--url", stub.url, "-m", "iris", "-i", str(path)]
    for name, check in (("o.csv", lambda t: t.startswith("p_setosa,p_versicolor,p_virginica,label,score\n")),
                        ("o.jsonl", lambda t: len([json.loads(x) for x in t.splitlines()]) == len(data)),
                        ("o.json", lambda t: len(json.loads(t)["predictions"]) == len(data))):
        ok(run_cli(*args, "-o", str(tmp_path / name), store=pstore.root))
        assert check((tmp_path / name).read_text()), name
    before = stub.requests
    proc = run_cli(*args, "-o", str(tmp_path / "o.txt"), store=pstore.root)
    assert proc.returncode == 2 and "--output" in proc.stderr and "pass --format" in proc.stderr, proc.stderr
    assert stub.requests == before and not list(tmp_path.glob("o.txt*"))
    ok(run_cli(*args, "-o", str(tmp_path / "o.txt"), "-f", "jsonl", store=pstore.root))
    assert len((tmp_path / "o.txt").read_text().splitlines()) == len(data)


def test_predict_json_is_one_document(tmp_path, pstore, stub, reference, data):  # noqa: F811
    path = write_csv(tmp_path / "d.csv", data)
    doc = json.loads(ok(run_cli("predict", "--url", stub.url, "-m", "iris", "-i", str(path), "--json",
                                store=pstore.root)).stdout)
    assert {k: doc[k] for k in ("model", "version", "rows", "output")} == {"model": "iris", "version": 1,
                                                                           "rows": len(data), "output": None}
    np.testing.assert_allclose(doc["predictions"], reference(data.astype(np.float32)), atol=1e-6)
    out = tmp_path / "p.csv"
    doc = json.loads(ok(run_cli("predict", "--url", stub.url, "-m", "iris", "-i", str(path), "--json", "-o",
                                str(out), store=pstore.root)).stdout)
    assert doc["output"] == str(out) and "predictions" not in doc and doc["rows"] == len(data)
    assert out.read_text().startswith("p_setosa,")


def test_register_features_for_a_directory_and_the_positional_warning(
        tmp_path, models, stub, reference, data):  # noqa: F811
    shuffled = [FEATURES[i] for i in (2, 0, 3, 1)]
    path = write_csv(tmp_path / "d.csv", data, order=shuffled)
    bare, named = tmp_path / "bare", tmp_path / "named"
    ok(run_cli("register", str(models["small"]), "--name", "iris", store=bare))
    proc = ok(run_cli("predict", "--url", stub.url, "-m", "iris@1", "-i", str(path), store=bare))
    assert ("warning: no feature names are recorded for this model, so CSV columns are mapped to its 4 input "
            "columns in the file's order; to map them by name, record the names (maasctl register DIR --name "
            "NAME --features A,B,...)") in proc.stderr, proc.stderr
    assert "--model from the store" not in proc.stderr

    for bad, message in (("a,b,c", "--features: 3 names, the model's serving_default input takes 4 columns"),
                         ("a,b,a,c", "--features: 'a' appears twice")):
        proc = run_cli("register", str(models["small"]), "--name", "iris", "--features", bad, store=named)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    doc = json.loads(ok(run_cli("register", str(models["small"]), "--name", "iris", "--features",
                                ",".join(FEATURES), "--json", store=named)).stdout)
    assert doc["feature_names"] == FEATURES
    proc = ok(run_cli("predict", "--url", stub.url, "-m", "iris@1", "-i", str(path), store=named))
    assert "warning" not in proc.stderr
    np.testing.assert_allclose(predictions(proc.stdout), reference(data.astype(np.float32)), atol=1e-6)
