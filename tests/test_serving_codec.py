"""JSON <-> tensor conversion for the REST API (pure Python + NumPy, no TensorFlow, no HTTP)."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest

from maasctl import tensors
from maasctl.errors import InvalidInput
from maasctl.serving import codec

SMALL = {"serving_default": {"inputs": {"features": {"dtype": "float32", "shape": [-1, 4], "tensor": "x:0"}},
                             "outputs": {"output_0": {"dtype": "float32", "shape": [-1, 3], "tensor": "y:0"}},
                             "method_name": "tensorflow/serving/predict"}}
MULTI = {"serving_default": {"inputs": {"a": {"dtype": "float32", "shape": [-1, 2], "tensor": "a:0"},
                                        "s": {"dtype": "string", "shape": [-1], "tensor": "s:0"}},
                             "outputs": {}, "method_name": "tensorflow/serving/predict"}}
INTS = {"serving_default": {"inputs": {"ids": {"dtype": "int32", "shape": [-1], "tensor": "i:0"},
                                       "flag": {"dtype": "bool", "shape": [-1], "tensor": "b:0"}},
                            "outputs": {}, "method_name": "tensorflow/serving/predict"}}


def parse(body: bytes | dict, sigs=SMALL) -> codec.PredictRequest:
    doc = tensors.loads(body if isinstance(body, bytes) else json.dumps(body).encode())
    return codec.parse_predict(doc, sigs)


def error(body, sigs=SMALL) -> str:
    with pytest.raises(InvalidInput) as exc:
        parse(body, sigs)
    return str(exc.value)


def test_row_and_columnar_single_input():
    r = parse({"instances": [[1, 2, 3, 4], [5.5, 6, 7, 8]]})
    assert r.row_format and r.rows == 2 and r.signature_name == "serving_default"
    assert r.inputs["features"].dtype == np.float32
    np.testing.assert_array_equal(r.inputs["features"], [[1, 2, 3, 4], [5.5, 6, 7, 8]])
    c = parse({"inputs": [[1, 2, 3, 4]]})
    assert not c.row_format and c.rows == 1
    named = parse({"instances": [{"features": [1, 2, 3, 4]}]})
    np.testing.assert_array_equal(named.inputs["features"], [[1, 2, 3, 4]])
    assert parse({"inputs": {"features": [[1, 2, 3, 4]]}}).rows == 1


def test_multi_input_rows_b64_and_columnar():
    b64 = base64.b64encode(b"\xff").decode()
    r = parse({"instances": [{"a": [1, 2], "s": "héllo"}, {"a": [3, 4], "s": {"b64": b64}}]}, MULTI)
    assert r.rows == 2
    assert r.inputs["s"].tolist() == ["héllo".encode(), b"\xff"]
    c = parse({"inputs": {"a": [[1, 2]], "s": ["x"]}}, MULTI)
    assert c.inputs["s"].dtype == object and c.inputs["a"].shape == (1, 2)


def test_nan_and_infinity_tokens_are_accepted():
    r = parse(b'{"instances": [[NaN, Infinity, -Infinity, 1]]}')
    x = r.inputs["features"][0]
    assert math.isnan(x[0]) and x[1] == math.inf and x[2] == -math.inf


@pytest.mark.parametrize("body, expected", [
    ({"instances": [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3]]},
     "input 'features' expects shape [-1, 4] float32; got rows of length 3 at instances[2]"),
    ({"instances": [[1, 2, 3]]}, "got rows of length 3 at instances[0]"),
    ({"instances": [[1, 2, 3, "x"]]}, "(numbers); got a string (\"x\") at instances[0][3]"),
    ({"instances": [[1, 2, 3, None]]}, "got null"),
    ({"inputs": [1, 2, 3, 4]}, "got shape [4] in inputs"),
    ({"instances": []}, "'instances' is empty"),
    ({"instances": {"a": 1}}, "'instances' must be a list"),
    ({"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}, "both 'inputs' and 'instances'"),
    ({}, "Missing 'inputs' or 'instances' key"),
    ({"signature_name": "nope", "instances": [[1, 2, 3, 4]]}, "'nope' not found"),
    ({"signature_name": 3, "instances": [[1, 2, 3, 4]]}, "'signature_name' must be a string"),
    ([1, 2], "must be a JSON object"),
])
def test_bad_requests_say_what_was_expected(body, expected):
    assert expected in error(body)


def test_multi_input_errors_name_the_keys():
    assert "missing 's'" in error({"instances": [{"a": [1, 2]}]}, MULTI)
    assert "unknown 'z'" in error({"inputs": {"a": [[1, 2]], "s": ["x"], "z": 1}}, MULTI)
    assert "got a number (1) at inputs['s'][0]" in error({"inputs": {"a": [[1, 2]], "s": [1]}}, MULTI)
    assert "invalid base64" in error({"inputs": {"a": [[1, 2]], "s": [{"b64": "!!"}]}}, MULTI)
    assert "ragged" in error({"inputs": {"a": [[1, 2], [1]], "s": ["x", "y"]}}, MULTI)


def test_ints_and_bools_are_strict():
    ok = parse({"instances": [{"ids": 3, "flag": True}]}, INTS)
    assert ok.inputs["ids"].dtype == np.int32 and ok.inputs["flag"].dtype == np.bool_
    assert "(integers); got a number (1.5)" in error({"instances": [{"ids": 1.5, "flag": True}]}, INTS)
    assert "out of range for int32" in error({"instances": [{"ids": 2**40, "flag": True}]}, INTS)
    assert "true/false" in error({"instances": [{"ids": 1, "flag": 1}]}, INTS)


def test_malformed_json():
    with pytest.raises(InvalidInput, match="^JSON Parse error"):
        tensors.loads(b'{"instances": [1,')
    with pytest.raises(InvalidInput, match="not UTF-8"):
        tensors.loads(b"\xff\xfe")


def test_encode_forms():
    one = {"y": np.array([[0.5, 0.25]], dtype=np.float32)}
    assert json.loads(tensors.encode_predict(one, True)) == {"predictions": [[0.5, 0.25]]}
    assert json.loads(tensors.encode_predict(one, False)) == {"outputs": [[0.5, 0.25]]}
    two = {"sum": np.array([1.5, 2.0], dtype=np.float32), "len": np.array([2, 3], dtype=np.int32)}
    assert json.loads(tensors.encode_predict(two, True)) == {"predictions": [{"sum": 1.5, "len": 2},
                                                                           {"sum": 2.0, "len": 3}]}
    assert json.loads(tensors.encode_predict(two, False)) == {"outputs": {"sum": [1.5, 2.0], "len": [2, 3]}}


def test_encode_float32_round_trips_exactly():
    x = np.random.default_rng(0).random((50, 3)).astype(np.float32)
    back = np.array(json.loads(tensors.encode_predict({"y": x}, True))["predictions"], dtype=np.float32)
    np.testing.assert_array_equal(back, x)


def test_encode_non_finite_and_strings():
    body = tensors.encode_predict({"y": np.array([np.nan, np.inf, -np.inf], dtype=np.float32)}, False)
    assert body == b'{"outputs":[NaN,Infinity,-Infinity]}'
    strings = np.array([b"ok", b"\xff"], dtype=object)
    assert json.loads(tensors.encode_predict({"t": strings}, False)) == {"outputs": ["ok", {"b64": "/w=="}]}
    assert json.loads(tensors.encode_predict({"t_bytes": strings}, False))["outputs"][0] == {"b64": "b2s="}


def test_only_free_batch_dimensions_are_batchable():
    fixed = {"serving_default": {"inputs": {"x": {"dtype": "float32", "shape": [1, 2], "tensor": "x:0"}},
                                 "outputs": {}, "method_name": ""}}
    assert parse({"instances": [[1, 2]]}, fixed).rows is None
    ragged_lead = parse({"inputs": {"a": [[1, 2], [3, 4]], "s": ["x"]}}, MULTI)
    assert ragged_lead.rows is None  # leading sizes differ: the model call sees the request alone
    assert parse({"inputs": {"a": [[1, 2]], "s": ["x"]}}, MULTI).rows == 1


@pytest.mark.parametrize("body", [b'{"instances": [[1e400, 1, 2, 3]]}', b'{"instances": [[-1e400, 1, 2, 3]]}',
                                  b'{"instances": [[Infinity, 1e999, 2, 3]]}'])
def test_numbers_that_overflow_to_infinity_are_refused(body):
    with pytest.raises(InvalidInput, match="JSON Parse error"):
        parse(body)


def test_the_literal_infinity_and_nan_tokens_are_accepted():
    arr = parse(b'{"instances": [[Infinity, -Infinity, NaN, 1e308]]}').inputs["features"]
    assert np.isposinf(arr[0, 0]) and np.isneginf(arr[0, 1]) and np.isnan(arr[0, 2])
