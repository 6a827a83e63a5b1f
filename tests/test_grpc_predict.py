"""`maasctl predict --grpc`: the hand-written wire codec against TF Serving's generated classes, and the CLI
against a real gRPC server on 127.0.0.1 (input order kept over many in-flight requests; TensorFlow never
imported by the client)."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import numpy as np
import pytest
from conftest import run_cli

from maasctl.predict import grpc_wire
from maasctl.refs import ModelRef, parse_ref
from maasctl.serving.server import ServeOptions, ServerThread, build_app
from maasctl.store import Store
from maasctl.tf.servable import store_loader

pytestmark = pytest.mark.tf


def test_request_encoding_parses_with_the_generated_classes(tf):
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    s = np.array([b"a", "h\u00e9".encode(), b""], dtype=object)
    n = np.array([-3, 2**40], dtype=np.int64)
    body = grpc_wire.predict_request(ModelRef("m", version=2**33), "sig", {"x": x, "s": s, "n": n},
                                     {"x": "float32", "s": "string", "n": "int64"})
    req = predict_pb2.PredictRequest.FromString(body)
    assert (req.model_spec.name, req.model_spec.version.value, req.model_spec.signature_name) == ("m", 2**33, "sig")
    np.testing.assert_array_equal(tf.make_ndarray(req.inputs["x"]), x)
    assert tf.make_ndarray(req.inputs["s"]).tolist() == s.tolist()
    np.testing.assert_array_equal(tf.make_ndarray(req.inputs["n"]), n)
    labelled = predict_pb2.PredictRequest.FromString(
        grpc_wire.predict_request(ModelRef("m", alias="prod"), "", {"x": x}, {"x": "float32"}))
    assert labelled.model_spec.version_label == "prod" and not labelled.model_spec.HasField("version")
    meta = get_model_metadata_pb2.GetModelMetadataRequest.FromString(grpc_wire.metadata_request(ModelRef("m")))
    assert meta.model_spec.name == "m" and list(meta.metadata_field) == ["signature_def"]


def test_response_decoding_reads_every_value_field(tf):
    from tensorflow_serving.apis import predict_pb2

    resp = predict_pb2.PredictResponse()
    resp.model_spec.name = "m"
    resp.model_spec.version.value = 7
    values = {"content": np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32),
              "double": np.array([[1.5, -2.25]]), "ints": np.array([-1, 0, 2**31 - 1], np.int32),
              "longs": np.array([-2**40, 5]), "flags": np.array([True, False]),
              "text": np.array([b"x", b"yz"], dtype=object)}
    for k, v in values.items():
        resp.outputs[k].CopyFrom(tf.make_tensor_proto(v))
    # typed fields instead of tensor_content (TF Serving's older answers; other servers)
    for key, dtype, field, vals in (("packed", 1, "float_val", [0.5, 1.5]), ("varints", 3, "int_val", [-1, 7])):
        proto = resp.outputs[key]
        proto.dtype = dtype
        proto.tensor_shape.dim.add().size = 2
        getattr(proto, field).extend(vals)
    outputs, spec = grpc_wire.predict_response(resp.SerializeToString())
    assert spec["name"] == "m" and spec["version"] == 7
    for k, v in values.items():
        assert outputs[k].dtype == v.dtype if v.dtype != object else outputs[k].dtype == object
        assert outputs[k].tolist() == v.tolist(), k
    assert outputs["packed"].tolist() == [0.5, 1.5] and outputs["varints"].tolist() == [-1, 7]


@pytest.fixture(scope="module")
def server(tf, models, tmp_path_factory):
    root = tmp_path_factory.mktemp("grpc-predict")
    store = Store(root / "store")
    store.register(models["small"], "small", meta={"task": "classification",
                                                   "class_names": ["a", "b", "c"],
                                                   "feature_names": ["f1", "f2", "f3", "f4"]})
    store.register(models["multi"], "multi")
    app = build_app(store, [parse_ref("small"), parse_ref("multi")], ServeOptions(), loader=store_loader(store))
    srv = ServerThread(app, grpc_port=0).start()
    srv.wait_ready()
    yield srv, store
    srv.stop()


def test_metadata_response_decodes_the_servers_signatures(server):
    srv, _ = server
    with grpc.insecure_channel(srv.grpc_address) as channel:
        raw = channel.unary_unary(grpc_wire.METADATA)(grpc_wire.metadata_request(ModelRef("multi")), timeout=30)
    sigs, spec = grpc_wire.metadata_response(raw)
    assert spec["name"] == "multi" and spec["version"] == 1
    sig = sigs["serving_default"]
    assert {k: (v["dtype"], v["shape"]) for k, v in sig["inputs"].items()} == {"a": ("float32", [-1, 2]),
                                                                                "s": ("string", [-1])}


def test_predict_grpc_csv_keeps_input_order_and_matches_rest(server, tmp_path, tf):
    srv, store = server
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 4)).astype(np.float32)
    data = tmp_path / "in.csv"
    data.write_text("f1,f2,f3,f4\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in x) + "\n")
    # 7-row requests: 72 of them, up to 8 in flight
    g = run_cli("predict", "--grpc", srv.grpc_address, "--model", "small", "-i", str(data), "-b", "7",
                "--format", "jsonl", store=store.root)
    assert g.returncode == 0, g.stderr
    r = run_cli("predict", "--url", srv.url, "--model", "small", "-i", str(data), "-b", "7", "--format", "jsonl",
                store=store.root)
    assert r.returncode == 0, r.stderr
    assert g.stdout == r.stdout
    sig = tf.saved_model.load(str(store.version_dir("small", 1))).signatures["serving_default"]
    want = sig(features=x)["output_0"].numpy()
    got = np.array([json.loads(line)["output_0"] for line in g.stdout.splitlines()])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert "(gRPC)" in g.stderr


def test_predict_grpc_strings_and_tf_serving_body(server, tmp_path):
    srv, store = server
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"instances": [{"a": [1, 2], "s": "abc"}, {"a": [0.5, 0], "s": "h\u00e9"}]}))
    r = run_cli("predict", "--grpc", srv.grpc_address, "--model", "multi@1", "-i", str(body), store=store.root)
    assert r.returncode == 0, r.stderr
    preds = json.loads(r.stdout)["predictions"]
    assert [p["len"] for p in preds] == [3, 3] and preds[0]["sum"] == pytest.approx(8.0)


def test_predict_grpc_errors(server, tmp_path):
    srv, store = server
    data = tmp_path / "in.csv"
    data.write_text("f1,f2,f3,f4\n1,2,3,4\n")
    missing = run_cli("predict", "--grpc", srv.grpc_address, "--model", "nope", "-i", str(data), store=store.root)
    assert missing.returncode == 3 and missing.stderr.startswith("Error: ") and "NOT_FOUND" in missing.stderr
    bad = run_cli("predict", "--grpc", "nohost", "--model", "small", "-i", str(data), store=store.root)
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr
    nomodel = run_cli("predict", "--grpc", srv.grpc_address, "-i", str(data), store=store.root)
    assert nomodel.returncode == 2 and "--model is required" in nomodel.stderr
    both = run_cli("predict", "--grpc", srv.grpc_address, "--url", srv.url, "-m", "small", "-i", str(data),
                   store=store.root)
    assert both.returncode == 2 and "--grpc excludes --url" in both.stderr


def test_grpc_client_never_imports_tensorflow(server, tmp_path):
    srv, store = server
    data = tmp_path / "in.csv"
    data.write_text("f1,f2,f3,f4\n1,2,3,4\n")
    probe = ("import sys\nfrom maasctl.cli import main\n"
             f"sys.argv = ['maasctl', '--store', {str(store.root)!r}, 'predict', '--grpc', {srv.grpc_address!r}, "
             f"'-m', 'small', '-i', {str(data)!r}]\n"
             "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
             "sys.stderr.write('TF=' + str('tensorflow' in sys.modules) + '\\n')\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                       check=False)
    assert "TF=False" in r.stderr, r.stderr
    assert json.loads(r.stdout)["predictions"][0]
