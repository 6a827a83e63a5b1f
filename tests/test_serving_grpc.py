"""TF Serving's gRPC API over a real grpcio server on 127.0.0.1, driven by the stock TF Serving client code
(`PredictionServiceStub` + `tf.make_tensor_proto`), against real SavedModels in a real store; predictions are
compared with `tf.saved_model.load(<store version dir>)`. The REST server runs beside it on the same Manager.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

import grpc
import numpy as np
import pytest
import requests

from maasctl.refs import parse_ref
from maasctl.serving.server import ServeOptions, ServerThread, build_app
from maasctl.store import Store
from maasctl.tf.servable import store_loader

pytestmark = pytest.mark.tf
MAX_BODY = 256 * 1024
CLASSES = ["setosa", "versicolor", "virginica"]
FEATURES = ["sl", "sw", "pl", "pw"]
X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]], dtype=np.float32)
TOKEN = "s3cret-grpc"


@pytest.fixture(scope="module")
def apis(tf):
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        inference_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
        regression_pb2,
    )

    return {"classification": classification_pb2, "metadata": get_model_metadata_pb2,
            "status": get_model_status_pb2, "inference": inference_pb2, "model_service": model_service_pb2_grpc,
            "predict": predict_pb2, "prediction_service": prediction_service_pb2_grpc, "regression": regression_pb2}


def build_linear(path, targets: int = 1):
    import keras

    keras.utils.set_random_seed(5)
    inp = keras.Input(shape=(4,), name="features")
    keras.Model(inp, keras.layers.Dense(targets)(inp)).export(str(path), verbose=False)
    return path


@pytest.fixture(scope="module")
def served(tf, models, tmp_path_factory):
    root = tmp_path_factory.mktemp("grpc")
    store = Store(root / "store")
    store.register(models["small"], "small")                       # v1
    store.register(models["small_b"], "small", aliases=["stable"])  # v2
    store.set_alias("small@1", "stable")
    store.register(models["multi"], "multi")
    store.register(models["small"], "iris", meta={"task": "classification", "class_names": CLASSES,
                                                  "feature_names": FEATURES})
    store.register(build_linear(root / "linear"), "reg", meta={"task": "regression", "feature_names": FEATURES})
    store.register(build_linear(root / "linear2", targets=2), "reg2",
                   meta={"task": "regression", "feature_names": FEATURES})
    refs = [parse_ref(r) for r in ("small", "multi", "iris@1", "reg", "reg2")]
    server = ServerThread(build_app(store, refs, ServeOptions(max_body_bytes=MAX_BODY, poll_interval=0.05),
                                    loader=store_loader(store)),
                          grpc_port=0).start()
    server.wait_ready()
    channel = grpc.insecure_channel(server.grpc_address)
    yield server, store, channel
    channel.close()
    server.stop()


@pytest.fixture(scope="module")
def stub(served, apis):
    return apis["prediction_service"].PredictionServiceStub(served[2])


@pytest.fixture(scope="module")
def reference(tf, served):
    store = served[1]
    cache = {}

    def get(name: str, version: int):
        if (name, version) not in cache:
            sig = tf.saved_model.load(str(store.version_dir(name, version))).signatures["serving_default"]
            cache[(name, version)] = sig
        return cache[(name, version)]

    return get


def expected(reference, name: str, version: int, x: np.ndarray) -> np.ndarray:
    return next(iter(reference(name, version)(features=x).values())).numpy()


def predict_request(apis, tf, model: str, x, *, version=None, label=None, signature=None, name="features"):
    req = apis["predict"].PredictRequest()
    req.model_spec.name = model
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    if signature is not None:
        req.model_spec.signature_name = signature
    req.inputs[name].CopyFrom(tf.make_tensor_proto(x))
    return req


# -- predict -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version, label, served_version", [(None, None, 2), (1, None, 1), (2, None, 2),
                                                            (None, "stable", 1)])
def test_predict_with_the_stock_client_matches_tensorflow(served, stub, apis, tf, reference, version, label,
                                                          served_version):
    resp = stub.Predict(predict_request(apis, tf, "small", X, version=version, label=label), timeout=30)
    (proto,) = resp.outputs.values()
    got = tf.make_ndarray(proto)
    assert got.dtype == np.float32 and got.shape == (3, 3)
    np.testing.assert_allclose(got, expected(reference, "small", served_version, X), atol=1e-6)
    assert resp.model_spec.name == "small" and resp.model_spec.version.value == served_version
    assert resp.model_spec.signature_name == "serving_default"


def test_versions_really_differ(reference):
    assert not np.allclose(expected(reference, "small", 1, X), expected(reference, "small", 2, X), atol=1e-3)


def test_multi_input_strings_and_output_filter(served, stub, apis, tf, reference):
    a = np.array([[1, 2], [3, 4]], dtype=np.float32)
    s = np.array([b"ab", b"hello"], dtype=object)
    req = apis["predict"].PredictRequest()
    req.model_spec.name = "multi"
    req.inputs["a"].CopyFrom(tf.make_tensor_proto(a))
    req.inputs["s"].CopyFrom(tf.make_tensor_proto(s))
    resp = stub.Predict(req, timeout=30)
    want = reference("multi", 1)(a=tf.constant(a), s=tf.constant(s))
    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["sum"]), want["sum"].numpy(), atol=1e-6)
    assert tf.make_ndarray(resp.outputs["len"]).tolist() == want["len"].numpy().tolist()
    req.output_filter.append("len")
    assert list(stub.Predict(req, timeout=30).outputs) == ["len"]


def test_typed_value_fields_are_read_like_tensorflow(stub, apis, tf, reference):
    """float_val instead of tensor_content (what other clients send), with TensorFlow's fill rule."""
    req = apis["predict"].PredictRequest()
    req.model_spec.name = "small"
    proto = req.inputs["features"]
    proto.dtype = 1
    proto.tensor_shape.dim.add().size = 2
    proto.tensor_shape.dim.add().size = 4
    proto.float_val.extend([0.5])  # one value fills the tensor
    got = tf.make_ndarray(stub.Predict(req, timeout=30).outputs["output_0"])
    np.testing.assert_allclose(got, expected(reference, "small", 2, np.full((2, 4), 0.5, np.float32)), atol=1e-6)


def test_64_concurrent_clients_get_their_own_rows(served, apis, tf, reference):
    rng = np.random.default_rng(7)
    inputs = [rng.normal(size=(1 + i % 3, 4)).astype(np.float32) for i in range(64)]
    address = served[0].grpc_address
    start = threading.Barrier(64)

    def call(x: np.ndarray):
        with grpc.insecure_channel(address) as channel:
            client = apis["prediction_service"].PredictionServiceStub(channel)
            start.wait(30)
            return [tf.make_ndarray(client.Predict(predict_request(apis, tf, "small", x, version=2), timeout=60)
                                    .outputs["output_0"]) for _ in range(5)]

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        results = list(pool.map(call, inputs))
    for x, outs in zip(inputs, results):
        want = expected(reference, "small", 2, x)
        for got in outs:
            np.testing.assert_allclose(got, want, atol=1e-6)


# -- metadata and status -------------------------------------------------------------------------------
def test_get_model_metadata(stub, apis, tf):
    req = apis["metadata"].GetModelMetadataRequest()
    req.model_spec.name = "small"
    req.metadata_field.append("signature_def")
    resp = stub.GetModelMetadata(req, timeout=30)
    assert resp.model_spec.name == "small" and resp.model_spec.version.value == 2
    sigs = apis["metadata"].SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sigs)
    sig = sigs.signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    feat = sig.inputs["features"]
    assert feat.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in feat.tensor_shape.dim] == [-1, 4]
    req.model_spec.version_label = "stable"
    assert stub.GetModelMetadata(req, timeout=30).model_spec.version.value == 1


def test_get_model_status(served, apis):
    client = apis["model_service"].ModelServiceStub(served[2])
    req = apis["status"].GetModelStatusRequest()
    req.model_spec.name = "small"
    resp = client.GetModelStatus(req, timeout=30)
    states = {s.version: s for s in resp.model_version_status}
    assert sorted(states) == [1, 2]
    available = apis["status"].ModelVersionStatus.State.Value("AVAILABLE")
    assert all(s.state == available and s.status.error_code == 0 and not s.status.error_message
               for s in states.values())
    req.model_spec.version.value = 1
    assert [s.version for s in client.GetModelStatus(req, timeout=30).model_version_status] == [1]
    req.model_spec.version.value = 7
    with pytest.raises(grpc.RpcError) as err:
        client.GetModelStatus(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# -- classify / regress / multi-inference -----------------------------------------------------------
def _input(apis, rows, context=None):
    from tensorflow.core.example import example_pb2

    inp = apis["classification"].ClassificationRequest().input

    def example(values):
        ex = example_pb2.Example()
        for k, v in values.items():
            ex.features.feature[k].float_list.value.append(v)
        return ex

    target = inp.example_list_with_context if context else inp.example_list
    for row in rows:
        target.examples.add().CopyFrom(example(row))
    if context:
        target.context.CopyFrom(example(context))
    return inp


def test_classify_and_regress(stub, apis, reference):
    rows = [dict(zip(FEATURES, r)) for r in X.tolist()]
    req = apis["classification"].ClassificationRequest()
    req.model_spec.name = "iris"
    req.input.CopyFrom(_input(apis, rows))
    resp = stub.Classify(req, timeout=30)
    want = expected(reference, "iris", 1, X)
    assert [[c.label for c in cl.classes] for cl in resp.result.classifications] == [CLASSES] * 3
    np.testing.assert_allclose([[c.score for c in cl.classes] for cl in resp.result.classifications], want,
                               atol=1e-6)
    req.input.CopyFrom(_input(apis, [{"pl": 1.4, "pw": 0.2}], context={"sl": 5.1, "sw": 3.5}))
    ctx = stub.Classify(req, timeout=30)
    np.testing.assert_allclose([c.score for c in ctx.result.classifications[0].classes], want[0], atol=1e-6)

    rreq = apis["regression"].RegressionRequest()
    rreq.model_spec.name = "reg"
    rreq.input.CopyFrom(_input(apis, rows))
    values = [r.value for r in stub.Regress(rreq, timeout=30).result.regressions]
    np.testing.assert_allclose(values, expected(reference, "reg", 1, X)[:, 0], atol=1e-6)

    mreq = apis["inference"].MultiInferenceRequest()
    task = mreq.tasks.add()
    task.model_spec.name = "iris"
    task.method_name = "tensorflow/serving/classify"
    mreq.input.CopyFrom(_input(apis, rows))
    (result,) = stub.MultiInference(mreq, timeout=30).results
    np.testing.assert_allclose([[c.score for c in cl.classes] for cl in result.classification_result.classifications],
                               want, atol=1e-6)

    for method, model in ((stub.Classify, "small"), (stub.Regress, "iris")):
        bad = (apis["classification"].ClassificationRequest() if method is stub.Classify
               else apis["regression"].RegressionRequest())
        bad.model_spec.name = model
        bad.input.CopyFrom(_input(apis, rows[:1]))
        with pytest.raises(grpc.RpcError) as err:
            method(bad, timeout=30)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED and "use :predict" in err.value.details()


def test_multi_target_regress_is_refused_as_tf_serving_does(served, stub, apis, reference):
    """TF Serving's Regression has one float per example: its regressor answers a [batch, 2] output with this
    INVALID_ARGUMENT (regressor.cc), for Regress and for a regress task of MultiInference. Predict serves it."""
    rows = [dict(zip(FEATURES, r)) for r in X.tolist()]
    rreq = apis["regression"].RegressionRequest()
    rreq.model_spec.name = "reg2"
    rreq.input.CopyFrom(_input(apis, rows))
    mreq = apis["inference"].MultiInferenceRequest()
    task = mreq.tasks.add()
    task.model_spec.name = "reg2"
    task.method_name = "tensorflow/serving/regress"
    mreq.input.CopyFrom(_input(apis, rows))
    for call, req in ((stub.Regress, rreq), (stub.MultiInference, mreq)):
        with pytest.raises(grpc.RpcError) as err:
            call(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == ("Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                                       "but got [3,2]")
    server = served[0]
    rest = requests.post(server.url + "/v1/models/reg2:regress", json={"examples": rows}, timeout=30)
    assert rest.status_code == 200  # REST's extension: a list per example
    np.testing.assert_allclose(rest.json()["results"], expected(reference, "reg2", 1, X), atol=1e-6)


# -- errors --------------------------------------------------------------------------------------------
def _bad_requests(apis, tf):
    P = apis["predict"]
    out = []

    def req(model="small", x=X, **kw):
        return predict_request(apis, tf, model, x, **kw)

    out.append((req(model="nope"), grpc.StatusCode.NOT_FOUND, "Latest(nope)"))
    out.append((req(version=9), grpc.StatusCode.NOT_FOUND, "Specific(small, 9)"))
    out.append((req(label="prod"), grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: prod"))
    out.append((req(signature="nope"), grpc.StatusCode.INVALID_ARGUMENT, "\"nope\" not found"))
    out.append((req(x=X.astype(np.float64)), grpc.StatusCode.INVALID_ARGUMENT,
                "Expects arg 'features' to be float but double is provided"))
    out.append((req(x=X[:, :3]), grpc.StatusCode.INVALID_ARGUMENT, "expects shape [?, 4] float32; got shape [3, 3]"))
    out.append((req(name="other"), grpc.StatusCode.INVALID_ARGUMENT, "missing input(s) features"))
    missing = P.PredictRequest()
    missing.model_spec.name = "small"
    out.append((missing, grpc.StatusCode.INVALID_ARGUMENT, "missing input(s) features"))
    broken = req()
    broken.inputs["features"].tensor_content = b"\x00" * 7
    out.append((broken, grpc.StatusCode.INVALID_ARGUMENT, "tensor_content has 7 bytes"))
    filtered = req()
    filtered.output_filter.append("nope")
    out.append((filtered, grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found"))
    nameless = req()
    nameless.model_spec.name = ""
    out.append((nameless, grpc.StatusCode.INVALID_ARGUMENT, "model_spec.name is missing"))
    big = req(x=np.zeros((MAX_BODY // 16 + 10, 4), np.float32))
    out.append((big, grpc.StatusCode.RESOURCE_EXHAUSTED, ""))
    return out


def test_bad_requests_get_tf_serving_codes_and_the_server_keeps_serving(served, stub, apis, tf, reference):
    for request, code, message in _bad_requests(apis, tf):
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=30)
        assert err.value.code() == code, (err.value.code(), err.value.details())
        assert message in (err.value.details() or ""), err.value.details()
        assert "Traceback" not in (err.value.details() or "")
    resp = stub.Predict(predict_request(apis, tf, "small", X), timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["output_0"]), expected(reference, "small", 2, X),
                               atol=1e-6)
    metrics = requests.get(served[0].url + "/monitoring/prometheus/metrics", timeout=30).text
    assert 'maasctl_requests_total{model="small",version="2",api="grpc_predict",code="OK"}' in metrics
    assert 'api="grpc_predict",code="INVALID_ARGUMENT"' in metrics


def test_metadata_needs_a_field(stub, apis):
    req = apis["metadata"].GetModelMetadataRequest()
    req.model_spec.name = "small"
    for fields, message in (([], "at least one metadata_field"), (["x"], "Metadata field x is not supported")):
        del req.metadata_field[:]
        req.metadata_field.extend(fields)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetModelMetadata(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.details()


# -- token, loading, hot reload ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def token_server(served):
    from maasctl.serving.auth import TokenTable

    store = served[1]
    tokens = TokenTable([(TOKEN.encode(), frozenset({"predict", "read"})), (b"read-only", frozenset({"read"}))])
    app = build_app(store, [parse_ref("small@1")], ServeOptions(tokens=tokens), loader=store_loader(store))
    server = ServerThread(app, grpc_port=0).start()
    server.wait_ready()
    yield server
    server.stop()


def test_token_from_authorization_metadata(token_server, apis, tf):
    with grpc.insecure_channel(token_server.grpc_address) as channel:
        client = apis["prediction_service"].PredictionServiceStub(channel)
        req = predict_request(apis, tf, "small", X)
        for metadata, message in ((None, "missing 'authorization: Bearer"),
                                  ((("authorization", "Bearer wrong"),), "invalid bearer token")):
            with pytest.raises(grpc.RpcError) as err:
                client.Predict(req, metadata=metadata, timeout=30)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and message in err.value.details()
        ok = client.Predict(req, metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=30)
        assert ok.model_spec.version.value == 1
        # scopes as in REST: a read-only token may ask for metadata but not predict
        with pytest.raises(grpc.RpcError) as err:
            client.Predict(req, metadata=(("authorization", "Bearer read-only"),), timeout=30)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "'predict' scope" in err.value.details()
        meta = apis["metadata"].GetModelMetadataRequest()
        meta.model_spec.name = "small"
        meta.metadata_field.append("signature_def")
        got = client.GetModelMetadata(meta, metadata=(("authorization", "Bearer read-only"),), timeout=30)
        assert got.model_spec.version.value == 1


def test_unavailable_while_loading(served, apis, tf, reference):
    """While the version loads, calls get UNAVAILABLE (retry later), then the same call succeeds."""
    app = build_app(served[1], [parse_ref("small@1")], ServeOptions(), loader=store_loader(served[1]))
    gate = threading.Event()
    real_loader = app.manager.loader

    def slow_loader(name, version):
        gate.wait(60)
        return real_loader(name, version)

    app.manager.loader = slow_loader
    server = ServerThread(app, grpc_port=0).start()
    try:
        deadline = time.monotonic() + 30
        while app.manager.status("small").get(1) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        with grpc.insecure_channel(server.grpc_address) as channel:
            client = apis["prediction_service"].PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                client.Predict(predict_request(apis, tf, "small", X), timeout=30)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
            assert "LOADING" in err.value.details() or "loading" in err.value.details()
            gate.set()
            server.wait_ready()
            resp = client.Predict(predict_request(apis, tf, "small", X), timeout=30)
            np.testing.assert_allclose(tf.make_ndarray(resp.outputs["output_0"]), expected(reference, "small", 1, X),
                                       atol=1e-6)
    finally:
        gate.set()
        server.stop()


def test_hot_reload_under_grpc_load_fails_no_call(served, apis, tf, reference):
    server, store, _ = served
    address = server.grpc_address
    stop = threading.Event()
    seen: set[int] = set()
    errors: list[str] = []
    calls = [0]

    def load():
        with grpc.insecure_channel(address) as channel:
            client = apis["prediction_service"].PredictionServiceStub(channel)
            while not stop.is_set():
                try:
                    resp = client.Predict(predict_request(apis, tf, "small", X, label="stable"), timeout=30)
                    v = resp.model_spec.version.value
                    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["output_0"]),
                                               expected(reference, "small", v, X), atol=1e-6)
                    seen.add(v)
                    calls[0] += 1
                except Exception as exc:  # noqa: BLE001 - every failure is reported
                    errors.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for target in ("small@2", "small@1", "small@2", "small@1"):
            time.sleep(0.4)
            store.set_alias(target, "stable")
        time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert errors == []
    assert seen == {1, 2} and calls[0] > 20
