"""predict_io without TensorFlow: readers, record mapping, validation messages, writers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from maasctl.errors import InvalidInput
from maasctl.predict.encoding import Encoder
from maasctl.predict.inputs import InputSource
from maasctl.predict.schema import schema_from_signature
from maasctl.predict.wire import predictions_doc, request_body, response_outputs
from maasctl.predict.writers import make_writer
from maasctl.tensors import signature_from_metadata

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SMALL_SIG = {"inputs": {"features": {"dtype": "float32", "shape": [-1, 4], "tensor": "x:0"}},
             "outputs": {"output_0": {"dtype": "float32", "shape": [-1, 3], "tensor": "y:0"}}, "method_name": ""}
MULTI_SIG = {"inputs": {"a": {"dtype": "float32", "shape": [-1, 2], "tensor": "a:0"},
                        "s": {"dtype": "string", "shape": [-1], "tensor": "s:0"}},
             "outputs": {"len": {"dtype": "int32", "shape": [-1], "tensor": "l:0"},
                         "sum": {"dtype": "float32", "shape": [-1], "tensor": "s:0"}}, "method_name": ""}
META = {"task": "classification", "feature_names": FEATURES, "class_names": ["setosa", "versicolor", "virginica"]}
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]


def schema(meta=META, sig=SMALL_SIG):
    return schema_from_signature(json.loads(json.dumps(sig)), "serving_default", meta)


def encode_file(path: Path, sch=None, fmt=None, batch=2, warn=None):
    src = InputSource(str(path), fmt)
    enc = Encoder(sch or schema(), src.where, warn=warn)
    if src.body is not None:
        return enc.encode_body(src.body)[0]
    if src.format == "csv":
        enc.set_csv_header(src.header())
    parts = [enc.encode(c) for c in src.chunks(batch)]
    src.close()
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


EXPECTED = np.array(ROWS, dtype=np.float32)


@pytest.mark.parametrize("name,text", [
    ("rows.json", json.dumps(ROWS)),
    ("records.json", json.dumps([dict(zip(FEATURES, r)) for r in ROWS])),
    ("shuffled.json", json.dumps([{k: dict(zip(FEATURES, r))[k] for k in reversed(FEATURES)} for r in ROWS])),
    ("rows.jsonl", "\n".join(json.dumps(r) for r in ROWS) + "\n"),
    ("records.jsonl", "\n".join(json.dumps(dict(zip(FEATURES, r))) for r in ROWS)),
    ("plain.csv", ",".join(FEATURES) + "\n" + "\n".join(",".join(map(str, r)) for r in ROWS) + "\n"),
    ("messy.csv", ' petal_width ,"sepal_length", sepal_width,petal_length\r\n'
                  + "".join(f' {r[3]} ,"{r[0]}",  {r[1]}\t,"  {r[2]} "\r\n' for r in ROWS) + "\r\n"),
    ("body.json", json.dumps({"instances": ROWS})),
    ("columnar.json", json.dumps({"inputs": {"features": ROWS}})),
])
def test_every_format_maps_to_the_same_rows(tmp_path, name, text):
    arrays = encode_file(write(tmp_path, name, text))
    assert list(arrays) == ["features"]
    assert arrays["features"].dtype == np.float32
    np.testing.assert_array_equal(arrays["features"], EXPECTED)


def test_stdin_format_is_sniffed():
    for text in (json.dumps(ROWS), "\n".join(json.dumps(r) for r in ROWS),
                 ",".join(FEATURES) + "\n" + "\n".join(",".join(map(str, r)) for r in ROWS)):
        src = InputSource("-", None, stream=io.StringIO(text))
        enc = Encoder(schema(), src.where)
        if src.format == "csv":
            enc.set_csv_header(src.header())
        got = np.concatenate([enc.encode(c)["features"] for c in src.chunks(2)])
        np.testing.assert_array_equal(got, EXPECTED)


BAD = [
    ("ragged.json", json.dumps([ROWS[0], [1.0, 2.0, 3.0]]), "ragged.json: row 2: 3 values, the model takes 4"),
    ("wide.csv", ",".join(FEATURES) + "\n1,2,3,4\n1,2,3,4,5\n", "row 2 (line 3): 5 fields, the header has 4"),
    ("text.csv", ",".join(FEATURES) + "\n1,2,3,4\n1,abc,3,4\n",
     "row 2 (line 3): column 'sepal_width': 'abc' is not a number (input 'features' is float32[-1, 4])"),
    ("empty.csv", ",".join(FEATURES) + "\n1,,3,4\n", "row 1 (line 2): column 'sepal_width': empty is not a number"),
    ("dtype.json", json.dumps([ROWS[0], [1, "2", 3, 4]]), "row 2: column 'sepal_width': '2' is not a number"),
    ("bool.json", json.dumps([[1, 2, 3, True]]), "row 1: column 'petal_width': true is not a number"),
    ("missing.json", json.dumps([dict(zip(FEATURES, ROWS[0])), dict(zip(FEATURES[:3], ROWS[1]))]),
     "row 2: missing field 'petal_width' (expected: sepal_length, sepal_width, petal_length, petal_width)"),
    ("header.csv", "sepal_length,sepal_width,petal_length,colour\n1,2,3,4\n",
     "line 1 (header): missing column 'petal_width'"),
    ("nested.json", json.dumps([[1, 2, 3, [4]]]), "row 1: column 'petal_width': [4] is not a number"),
    ("broken.jsonl", json.dumps(ROWS[0]) + "\n[1, 2,\n", "line 2 (row 2): not valid JSON"),
    ("mixed.json", json.dumps([ROWS[0], dict(zip(FEATURES, ROWS[1]))]), "row 2: a record among rows"),
    ("body.json", json.dumps({"instances": [ROWS[0], [1, 2]]}), "input 'features': expected shape [4]"),
    ("both.json", json.dumps({"instances": [], "inputs": []}), "either 'instances' or 'inputs'"),
    ("scalar.json", "42", "expected a JSON array of rows or records"),
]


@pytest.mark.parametrize("name,text,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_row_and_column(tmp_path, name, text, message):
    with pytest.raises(InvalidInput) as exc:
        encode_file(write(tmp_path, name, text))
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_int_and_string_inputs_are_checked(tmp_path):
    sig = {"inputs": {"ids": {"dtype": "int32", "shape": [-1], "tensor": ""}, "s": {"dtype": "string", "shape": [-1], "tensor": ""}},
           "outputs": {"y": {"dtype": "float32", "shape": [-1], "tensor": ""}}, "method_name": ""}
    sch = schema({}, sig)
    got = encode_file(write(tmp_path, "ok.csv", 's,ids\n"a, b",1\nc,2\n'), sch)
    assert got["ids"].tolist() == [1, 2] and got["ids"].dtype == np.int32
    assert got["s"].tolist() == ["a, b", "c"]
    with pytest.raises(InvalidInput, match=r"row 2: column 'ids': 1.5 is not an integer"):
        encode_file(write(tmp_path, "bad.json", json.dumps([{"ids": 1, "s": "x"}, {"ids": 1.5, "s": "y"}])), sch)


def test_multi_input_records_and_bodies(tmp_path):
    sch = schema({}, MULTI_SIG)
    assert sch.columns is None  # `a` is a vector per row: no CSV layout
    recs = [{"s": "hi", "a": [1, 2]}, {"a": [3.5, 4], "s": {"b64": "eA=="}}]
    got = encode_file(write(tmp_path, "r.json", json.dumps(recs)), sch)
    np.testing.assert_array_equal(got["a"], np.array([[1, 2], [3.5, 4]], dtype=np.float32))
    assert got["s"].tolist() == ["hi", b"x"]
    with pytest.raises(InvalidInput, match="row 2: input 'a': expected shape \\[2\\], got shape \\[3\\]"):
        encode_file(write(tmp_path, "r2.json", json.dumps([recs[0], {"a": [1, 2, 3], "s": "x"}])), sch)
    with pytest.raises(InvalidInput, match="CSV input needs a model whose inputs are scalar columns"):
        encode_file(write(tmp_path, "m.csv", "a,s\n1,x\n"), sch)
    body = {"inputs": {"a": [[1, 2]], "s": ["q"]}}
    got = encode_file(write(tmp_path, "b.json", json.dumps(body)), sch)
    assert got["s"].tolist() == ["q"]
    assert json.loads(request_body(sch, got)) == {"signature_name": "serving_default",
                                                  "inputs": {"a": [[1.0, 2.0]], "s": ["q"]}}


def test_without_feature_names_records_follow_file_order_with_a_warning(tmp_path):
    warnings: list[str] = []
    sch = schema({})
    got = encode_file(write(tmp_path, "x.csv", "w,x,y,z\n" + "\n".join(",".join(map(str, r)) for r in ROWS)),
                      sch, warn=warnings.append)
    np.testing.assert_array_equal(got["features"], EXPECTED)
    assert len(warnings) == 1 and "file's order" in warnings[0]
    with pytest.raises(InvalidInput, match="line 1 \\(header\\): 3 columns, the model takes 4"):
        encode_file(write(tmp_path, "y.csv", "w,x,y\n1,2,3\n"), sch)


def test_metadata_signature_round_trip():
    from maasctl.tensors import tf_serving_metadata

    doc = {"model_spec": {"name": "m", "version": "1"},
           "metadata": {"signature_def": {"signature_def": {"serving_default": tf_serving_metadata(MULTI_SIG)}}}}
    sig = signature_from_metadata(doc, "serving_default", "here")
    assert {k: (v["dtype"], v["shape"]) for k, v in sig["inputs"].items()} == {"a": ("float32", [-1, 2]),
                                                                                "s": ("string", [-1])}
    with pytest.raises(InvalidInput, match="no signature 'other' \\(available: serving_default\\)"):
        signature_from_metadata(doc, "other", "here")


def test_response_decoding_row_and_columnar():
    sch = schema({}, MULTI_SIG)
    outs = {"len": np.array([2, 1], dtype=np.int32), "sum": np.array([1.5, 2.5], dtype=np.float32)}
    for columnar in (False, True):
        doc = predictions_doc(sch, outs, columnar=columnar)
        back = response_outputs(sch, json.loads(json.dumps(doc)), 2, "u")
        assert back["len"].tolist() == [2, 1] and back["sum"].tolist() == [1.5, 2.5]
    with pytest.raises(InvalidInput, match="output 'len' has 1 rows, expected 2"):
        response_outputs(sch, {"outputs": {"len": [1], "sum": [1.0]}}, 2, "u")


def render(fmt: str, chunks: list[dict[str, np.ndarray]], sch=None) -> str:
    out = io.StringIO()
    w = make_writer(fmt, out, sch or schema())
    for c in chunks:
        w.write(c)
    w.close()
    return out.getvalue()


PROBS = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6]], dtype=np.float32)


def test_writers_keep_order_across_chunks():
    chunks = [{"output_0": PROBS[:2]}, {"output_0": PROBS[2:]}]
    doc = json.loads(render("json", chunks))
    np.testing.assert_allclose(doc["predictions"], PROBS, atol=1e-7)
    lines = [json.loads(x) for x in render("jsonl", chunks).splitlines()]
    assert [x["label"] for x in lines] == ["versicolor", "setosa", "virginica"]
    np.testing.assert_allclose([x["score"] for x in lines], [0.7, 0.8, 0.6], atol=1e-7)
    csv_text = render("csv", chunks).splitlines()
    assert csv_text[0] == "p_setosa,p_versicolor,p_virginica,label,score"
    assert csv_text[1] == "0.1,0.7,0.2,versicolor,0.7"
    assert len(csv_text) == 4
    table = render("table", chunks)
    assert "virginica" in table and "0.6000" in table
    assert json.loads(render("json", [])) == {"predictions": []}
    assert render("csv", []) == "p_setosa,p_versicolor,p_virginica,label,score\n"


def test_writers_multi_output_without_classes():
    sch = schema({}, MULTI_SIG)
    outs = {"len": np.array([2, 1], dtype=np.int32), "sum": np.array([1.5, 2.5], dtype=np.float32)}
    assert json.loads(render("json", [outs], sch)) == {"predictions": [{"len": 2, "sum": 1.5}, {"len": 1, "sum": 2.5}]}
    assert render("csv", [outs], sch).splitlines() == ["len,sum", "2,1.5", "1,2.5"]
    assert [json.loads(x) for x in render("jsonl", [outs], sch).splitlines()] == [{"len": 2, "sum": 1.5},
                                                                                  {"len": 1, "sum": 2.5}]


def test_output_file_replaced_on_success_and_cleaned_up_when_the_rename_fails(tmp_path):
    from maasctl.errors import InvalidInput, OperationFailed
    from maasctl.predict.writers import open_output

    target = tmp_path / "p.json"
    out, finish = open_output(str(target))
    out.write("{}")
    finish(True)
    assert target.read_text() == "{}" and not (tmp_path / "p.json.partial").exists()
    with pytest.raises(InvalidInput, match=r"--output .*d: is a directory"):
        (tmp_path / "d").mkdir()
        open_output(str(tmp_path / "d"))
    # the path turns into a directory while predicting: one-line OperationFailed, no .partial left behind
    late = tmp_path / "late.json"
    out, finish = open_output(str(late))
    out.write("[]")
    late.mkdir()
    with pytest.raises(OperationFailed, match=r"--output .*late.json: cannot replace it .*nothing was written"):
        finish(True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "late.json", "p.json"]


@pytest.mark.parametrize("sig,body,message", [
    (SMALL_SIG, {"instances": []}, "'instances' is empty"),
    (SMALL_SIG, {"inputs": []}, "the batch in 'inputs' is empty"),
    (SMALL_SIG, {"inputs": {"features": []}}, "the batch in 'inputs' is empty"),
    (MULTI_SIG, {"instances": []}, "'instances' is empty"),
    (MULTI_SIG, {"inputs": {"a": [], "s": []}}, "the batch in 'inputs' is empty"),
])
def test_a_request_body_without_rows_is_rejected(tmp_path, sig, body, message):
    path = write(tmp_path, "b.json", json.dumps(body))
    with pytest.raises(InvalidInput, match=f"^no rows in {path}: {message}"):
        encode_file(path, schema({}, sig))
