"""The REST API over real HTTP on 127.0.0.1, against real SavedModels registered in a real store.

One in-process server (uvicorn in a thread) serves the whole module; predictions are compared with
`tf.saved_model.load(<store version dir>)`.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maasctl.refs import parse_ref
from maasctl.serving.server import ServeOptions, ServerThread, build_app
from maasctl.store import Store
from maasctl.tf.servable import store_loader

pytestmark = pytest.mark.tf
MAX_BODY = 256 * 1024
CLASSES = ["setosa", "versicolor", "virginica"]
FEATURES = ["sl", "sw", "pl", "pw"]


def build_linear(path):
    """A 4 -> 1 linear regression model, exported like maasctl's own (one `features` input)."""
    import keras

    keras.utils.set_random_seed(5)
    inp = keras.Input(shape=(4,), name="features")
    keras.Model(inp, keras.layers.Dense(1)(inp)).export(str(path), verbose=False)
    return path


@pytest.fixture(scope="module")
def served(tf, models, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    store = Store(root / "store")
    store.register(models["small"], "small")                       # v1
    store.register(models["small_b"], "small", aliases=["stable"])  # v2 <- stable (moved to v1 below)
    store.set_alias("small@1", "stable")
    store.register(models["multi"], "multi")
    store.register(models["small"], "iris", meta={"task": "classification", "class_names": CLASSES,
                                                  "feature_names": FEATURES})
    store.register(build_linear(root / "linear"), "reg", meta={"task": "regression", "feature_names": FEATURES})
    store.register(models["small_b"], "reg3", meta={"task": "regression", "feature_names": FEATURES})
    refs = [parse_ref(r) for r in ("small", "multi", "iris@1", "reg", "reg3")]
    server = ServerThread(build_app(store, refs, ServeOptions(max_body_bytes=MAX_BODY), loader=store_loader(store))).start()
    server.wait_ready()
    session = requests.Session()
    yield server.url, store, session
    session.close()
    server.stop()


@pytest.fixture(scope="module")
def reference(tf, served):
    """name@version -> serving_default of tf.saved_model.load on the store's version directory."""
    _, store, _ = served
    cache = {}

    def get(name: str, version: int):
        key = (name, version)
        if key not in cache:
            cache[key] = tf.saved_model.load(str(store.version_dir(name, version))).signatures["serving_default"]
        return cache[key]

    return get


def expected_small(reference, version: int, x: np.ndarray) -> np.ndarray:
    out = reference("small", version)(features=x.astype(np.float32))
    return next(iter(out.values())).numpy()


X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]], dtype=np.float32)


def post(served, path: str, body) -> requests.Response:
    url, _, session = served
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return session.post(url + path, data=data, headers={"Content-Type": "application/json"}, timeout=30)


def get(served, path: str) -> requests.Response:
    url, _, session = served
    return session.get(url + path, timeout=30)


# -- status, metadata, lists ---------------------------------------------------------------------------
def test_status_in_tf_serving_shape(served):
    r = get(served, "/v1/models/small")
    assert r.status_code == 200
    states = {s["version"]: s for s in r.json()["model_version_status"]}
    assert states["2"] == {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    assert states["1"]["state"] == "AVAILABLE"  # served because alias 'stable' points at it
    one = get(served, "/v1/models/small/versions/1").json()
    assert [s["version"] for s in one["model_version_status"]] == ["1"]
    assert get(served, "/v1/models/small/versions/7").status_code == 404
    missing = get(served, "/v1/models/nope")
    assert missing.status_code == 404 and "Could not find any versions of model nope" in missing.json()["error"]


def test_metadata(served):
    doc = get(served, "/v1/models/small/metadata").json()
    assert doc["model_spec"] == {"name": "small", "signature_name": "", "version": "2"}
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    feat = sig["inputs"]["features"]
    assert feat["dtype"] == "DT_FLOAT"
    assert feat["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}, {"size": "4", "name": ""}],
                                    "unknown_rank": False}
    assert sig["method_name"] == "tensorflow/serving/predict"
    labelled = get(served, "/v1/models/small/labels/stable/metadata").json()
    assert labelled["model_spec"]["version"] == "1"


def test_list_health_ready(served):
    models = {m["name"]: m for m in get(served, "/v1/models").json()["models"]}
    assert set(models) == {"small", "multi", "iris", "reg", "reg3"}
    assert models["small"]["default_version"] == "2" and models["small"]["labels"] == {"stable": "1"}
    assert get(served, "/healthz").json() == {"status": "ok"}
    assert get(served, "/readyz").status_code == 200


# -- predict -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("route, version", [("", 2), ("/versions/1", 1), ("/versions/2", 2), ("/labels/stable", 1)])
def test_predict_matches_tensorflow(served, reference, route, version):
    want = expected_small(reference, version, X)
    rows = post(served, f"/v1/models/small{route}:predict", {"instances": X.tolist()})
    assert rows.status_code == 200, rows.text
    np.testing.assert_allclose(np.array(rows.json()["predictions"]), want, atol=1e-6)
    cols = post(served, f"/v1/models/small{route}:predict", {"inputs": X.tolist()})
    np.testing.assert_allclose(np.array(cols.json()["outputs"]), want, atol=1e-6)
    named = post(served, f"/v1/models/small{route}:predict", {"signature_name": "serving_default",
                                                               "inputs": {"features": X.tolist()}})
    np.testing.assert_allclose(np.array(named.json()["outputs"]), want, atol=1e-6)


def test_versions_really_differ(served, reference):
    assert not np.allclose(expected_small(reference, 1, X), expected_small(reference, 2, X), atol=1e-3)


def test_multi_input_multi_output(served, reference):
    a = np.array([[1.0, 2.0], [0.5, -1.0]], dtype=np.float32)
    s = ["héllo", "ab"]
    ref = reference("multi", 1)(a=a, s=np.array([x.encode() for x in s], dtype=object))
    want_sum, want_len = ref["sum"].numpy(), ref["len"].numpy()
    rows = post(served, "/v1/models/multi:predict",
                {"instances": [{"a": a[0].tolist(), "s": s[0]},
                               {"a": a[1].tolist(), "s": {"b64": base64.b64encode(s[1].encode()).decode()}}]})
    assert rows.status_code == 200, rows.text
    preds = rows.json()["predictions"]
    np.testing.assert_allclose([p["sum"] for p in preds], want_sum, atol=1e-6)
    assert [p["len"] for p in preds] == want_len.tolist()
    cols = post(served, "/v1/models/multi/versions/1:predict", {"inputs": {"a": a.tolist(), "s": s}}).json()["outputs"]
    np.testing.assert_allclose(cols["sum"], want_sum, atol=1e-6)
    assert cols["len"] == want_len.tolist()


def test_64_concurrent_clients_get_their_own_rows(served, reference):
    rng = np.random.default_rng(7)
    inputs = [rng.normal(size=(1 + i % 3, 4)).astype(np.float32) for i in range(64)]
    url, _, _ = served

    def call(x: np.ndarray):
        with requests.Session() as s:
            outs = []
            for _ in range(5):
                r = s.post(url + "/v1/models/small/versions/2:predict", data=json.dumps({"instances": x.tolist()}),
                           timeout=60)
                assert r.status_code == 200, r.text
                outs.append(np.array(r.json()["predictions"]))
            return outs

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        results = list(pool.map(call, inputs))
    for x, outs in zip(inputs, results):
        want = expected_small(reference, 2, x)
        for got in outs:
            np.testing.assert_allclose(got, want, atol=1e-6)


# -- classify / regress --------------------------------------------------------------------------------
def test_classify_uses_recorded_class_names(served, reference):
    examples = [dict(zip(FEATURES, row)) for row in X.tolist()]
    r = post(served, "/v1/models/iris:classify", {"examples": examples})
    assert r.status_code == 200, r.text
    want = next(iter(reference("iris", 1)(features=X).values())).numpy()
    results = r.json()["results"]
    assert [[label for label, _ in row] for row in results] == [CLASSES] * 3
    np.testing.assert_allclose([[score for _, score in row] for row in results], want, atol=1e-6)
    ctx = post(served, "/v1/models/iris:classify", {"context": {"sl": 5.1, "sw": 3.5},
                                                     "examples": [{"pl": 1.4, "pw": 0.2}]})
    np.testing.assert_allclose([s for _, s in ctx.json()["results"][0]], want[0], atol=1e-6)
    missing = post(served, "/v1/models/iris:classify", {"examples": [{"sl": 1}]})
    assert missing.status_code == 400 and "lacks feature(s) sw, pl, pw" in missing.json()["error"]


def test_regress_and_unimplemented(served, reference):
    examples = [dict(zip(FEATURES, row)) for row in X.tolist()]
    r = post(served, "/v1/models/reg:regress", {"examples": examples})
    assert r.status_code == 200, r.text
    want = next(iter(reference("reg", 1)(features=X).values())).numpy()[:, 0]
    np.testing.assert_allclose(r.json()["results"], want, atol=1e-6)
    several = post(served, "/v1/models/reg3:regress", {"examples": examples[:1]})  # 3 targets: a list each
    want3 = next(iter(reference("reg3", 1)(features=X[:1]).values())).numpy()
    np.testing.assert_allclose(several.json()["results"], want3, atol=1e-6)
    for path in ("/v1/models/small:classify", "/v1/models/iris:regress", "/v1/models/reg:classify"):
        bad = post(served, path, {"examples": [{"sl": 1}]})
        assert bad.status_code == 501 and "use :predict" in bad.json()["error"]


# -- errors --------------------------------------------------------------------------------------------
BAD = [
    ("/v1/models/small:predict", b'{"instances": [[1, 2', 400, "JSON Parse error"),
    ("/v1/models/small:predict", {"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}, 400, "both"),
    ("/v1/models/small:predict", {"signature_name": "serving_default"}, 400, "Missing 'inputs' or 'instances' key"),
    ("/v1/models/small:predict", {"instances": [[1, 2, 3, 4], [1, 2, 3]]}, 400,
     "input 'features' expects shape [-1, 4] float32; got rows of length 3 at instances[1]"),
    ("/v1/models/small:predict", {"inputs": [[[1, 2, 3, 4]]]}, 400, "got shape [1, 1, 4] in inputs"),
    ("/v1/models/small:predict", {"instances": [[1, 2, 3, "4"]]}, 400, "got a string (\"4\") at instances[0][3]"),
    ("/v1/models/small:predict", {"instances": [[1, 2, [3], 4]]}, 400, "ragged"),
    ("/v1/models/small:predict", {"signature_name": "nope", "instances": [[1, 2, 3, 4]]}, 400, "'nope' not found"),
    ("/v1/models/multi:predict", {"instances": [{"a": [1, 2], "s": 5}]}, 400, "input 's' expects shape [-1] string"),
    ("/v1/models/nope:predict", {"instances": [[1, 2, 3, 4]]}, 404, "Servable not found for request: Latest(nope)"),
    ("/v1/models/small/versions/9:predict", {"instances": [[1, 2, 3, 4]]}, 404, "Specific(small, 9)"),
    ("/v1/models/small/versions/x:predict", {"instances": [[1, 2, 3, 4]]}, 400, "version must be a positive integer"),
    ("/v1/models/small/versions/%C2%B2:predict", {"instances": [[1, 2, 3, 4]]}, 400, "version must be a positive"),
    ("/v1/models/small/versions/9223372036854775808:predict", {"instances": [[1, 2, 3, 4]]}, 400,
     "version must be a positive integer below 2^63"),
    ("/v1/models/small/versions/9223372036854775807:predict", {"instances": [[1, 2, 3, 4]]}, 404,
     "Specific(small, 9223372036854775807)"),
    ("/v1/models/small/labels/prod:predict", {"instances": [[1, 2, 3, 4]]}, 400,
     "Unrecognized servable version label: prod"),
    ("/v1/models/small:explode", {"instances": [[1, 2, 3, 4]]}, 404, "unknown method ':explode'"),
    ("/v1/models/small:predict", b"\x89PNG\r\n\x1a\n\x00\x00", 400, "JSON Parse error"),
    ("/v1/models/small:predict", b"[1, 2, 3]", 400, "must be a JSON object"),
    ("/v1/models/small:predict", b"", 400, "JSON Parse error"),
    ("/v1/models/small:predict", b"x" * (MAX_BODY + 1), 413, "exceeds the limit"),
]


@pytest.mark.parametrize("path, body, status, message", BAD)
def test_bad_request(served, path, body, status, message):
    r = post(served, path, body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["error"]
    assert "Traceback" not in r.text


@pytest.mark.parametrize("version, status", [("%C2%B2", 400), ("%D9%A1", 400), ("00000000000000000000001", 200), ("9" * 5000, 400),
                                             ("9223372036854775808", 400), ("9223372036854775807", 404)])
def test_odd_versions_in_status_and_metadata_routes(served, version, status):
    url, _, session = served
    for tail in ("", "/metadata"):
        r = session.get(f"{url}/v1/models/small/versions/{version}{tail}")
        assert r.status_code == status, r.text
        assert "Traceback" not in r.text and "internal error" not in r.text


def test_wrong_method_and_route(served):
    url, _, session = served
    r = session.get(url + "/v1/models/small:predict")
    assert r.status_code == 405 and "use POST" in r.json()["error"]
    assert session.get(url + "/nothing").status_code == 404
    assert session.put(url + "/v1/models/small", data=b"{}").status_code == 405


def test_server_survives_1000_bad_requests(served, reference):
    for i in range(1000):
        path, body, status, _ = BAD[i % len(BAD)]
        assert post(served, path, body).status_code == status
    good = post(served, "/v1/models/small:predict", {"instances": X.tolist()})
    np.testing.assert_allclose(np.array(good.json()["predictions"]), expected_small(reference, 2, X), atol=1e-6)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30)
request_docs = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"instances": json_values, "inputs": json_values,
                                        "signature_name": json_values}),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=request_docs, model=st.sampled_from(["small", "multi"]))
def test_random_json_only_gets_4xx(served, doc, model):
    r = post(served, f"/v1/models/{model}:predict", json.dumps(doc))
    assert 400 <= r.status_code < 500 or r.status_code == 200, r.text
    assert "error" in r.json() or r.status_code == 200


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=200))
def test_random_bytes_only_get_4xx(served, body):
    r = post(served, "/v1/models/small:predict", body)
    assert 400 <= r.status_code < 500, r.text


def test_metrics(served):
    post(served, "/v1/models/small:predict", {"instances": X.tolist()})
    text = get(served, "/monitoring/prometheus/metrics").text
    assert 'maasctl_requests_total{model="small",version="2",api="predict",code="200"}' in text
    assert 'maasctl_requests_total{model="small",version="",api="predict",code="400"}' in text
    assert "maasctl_request_latency_seconds_bucket{" in text
    assert 'maasctl_model_call_seconds_count{model="small",version="2"}' in text
    assert 'maasctl_batch_size_rows_bucket{model="small",version="2",le="4"}' in text
    assert 'maasctl_loaded_versions{model="small"} 2' in text


# -- token -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def token_server(tf, served):
    _, store, _ = served
    server = ServerThread(build_app(store, [parse_ref("small@1")], ServeOptions(token="s3cret"), loader=store_loader(store))).start()
    server.wait_ready()
    yield server.url
    server.stop()


def test_token_required_except_healthz(token_server):
    body = json.dumps({"instances": X.tolist()})
    r = requests.post(token_server + "/v1/models/small:predict", data=body, timeout=30)
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    wrong = requests.post(token_server + "/v1/models/small:predict", data=body, timeout=30,
                          headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = requests.post(token_server + "/v1/models/small:predict", data=body, timeout=30,
                       headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    for header in ("bearer s3cret", "BEARER s3cret"):  # the scheme is case-insensitive (RFC 7235)
        r = requests.post(token_server + "/v1/models/small:predict", data=body, timeout=30,
                          headers={"Authorization": header})
        assert r.status_code == 200, header
    for header in ("Bearer S3CRET", "Basic s3cret", "Bearers3cret", "s3cret"):
        r = requests.post(token_server + "/v1/models/small:predict", data=body, timeout=30,
                          headers={"Authorization": header})
        assert r.status_code == 401, header
    for path in ("/v1/models", "/readyz", "/monitoring/prometheus/metrics", "/v1/models/small/metadata"):
        assert requests.get(token_server + path, timeout=30).status_code == 401
    assert requests.get(token_server + "/healthz", timeout=30).status_code == 200
