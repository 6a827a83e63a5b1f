"""`maasctl serve --grpc-port` in real subprocesses: serve/ps --json report the gRPC address, the token is
checked, a port in use is a one-line error, and stop lets an in-flight gRPC call finish."""

from __future__ import annotations

import json
import socket
import threading
import time

import grpc
import numpy as np
import pytest
from conftest import run_cli

from maasctl.serving import records
from maasctl.store import Store

pytestmark = [pytest.mark.tf, pytest.mark.slow]
X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]], dtype=np.float32)


def _predict(tf, address: str, x: np.ndarray, token: str | None):
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "small"
    req.inputs["features"].CopyFrom(tf.make_tensor_proto(x))
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        return tf.make_ndarray(stub.Predict(req, metadata=metadata, timeout=60).outputs["output_0"])


def test_grpc_port_in_use_exits_1(tmp_path, models):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cli("serve", "small", "--port", "0", "--grpc-port", str(port), store=store.root)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"Error: cannot bind the gRPC port 127.0.0.1:{port} (in use by another server?); "
                                "choose another with --grpc-port, or --grpc-port 0 for a free one. See: maasctl ps")


def test_grpc_with_a_bad_tls_certificate_fails_in_one_line(tmp_path, models):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    r = run_cli("serve", "small", "--port", "0", "--grpc-port", "0", "--tls-cert", str(cert), "--tls-key", str(key),
                store=store.root)
    assert r.returncode == 2 and r.stderr.startswith("Error: ")
    assert len(r.stderr.strip().splitlines()) == 1


def test_detached_grpc_server_ps_and_graceful_stop(tmp_path, models, tf):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    reference = tf.saved_model.load(str(store.version_dir("small", 1))).signatures["serving_default"]
    want = reference(features=X)["output_0"].numpy()
    r = run_cli("serve", "small", "--port", "0", "--grpc-port", "0", "--detach", "--json",
                "--batch-timeout-ms", "4000", env={"MAASCTL_TOKEN": "tok"}, store=store.root)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    address, pid = doc["grpc"], doc["pid"]
    assert address.startswith("127.0.0.1:") and not address.endswith(":0")
    try:
        listed = json.loads(run_cli("ps", "--json", store=store.root).stdout)
        assert [(s["id"], s["grpc"]) for s in listed] == [(doc["id"], address)]
        with pytest.raises(grpc.RpcError) as err:
            _predict(tf, address, X, None)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        np.testing.assert_allclose(_predict(tf, address, X, "tok"), want, atol=1e-6)  # waits 4 s (batch timeout)

        # `predict` finds the server in the store's records and uses its gRPC port
        data = tmp_path / "in.csv"
        data.write_text("a,b,c,d\n" + "\n".join(",".join(map(str, row)) for row in X.tolist()) + "\n")
        auto = run_cli("predict", "--model", "small", "-i", str(data), "--format", "jsonl",
                       env={"MAASCTL_TOKEN": "tok"}, store=store.root)
        assert auto.returncode == 0, auto.stderr
        assert f"predicting with small (= small@1) on server {doc['id']} at grpc://{address}" in auto.stderr
        np.testing.assert_allclose([json.loads(line)["output_0"] for line in auto.stdout.splitlines()], want,
                                   atol=1e-6)

        result = {}

        def in_flight():
            result["out"] = _predict(tf, address, X, "tok")

        t = threading.Thread(target=in_flight)
        t.start()
        time.sleep(0.5)
        assert t.is_alive() and "out" not in result  # still waiting in the batch queue
        stopped = run_cli("stop", doc["id"], "--json", store=store.root)
        assert stopped.returncode == 0 and json.loads(stopped.stdout)[0]["graceful"] is True
        t.join(30)
        np.testing.assert_allclose(result["out"], want, atol=1e-6)
    finally:
        if records.pid_alive(pid):
            run_cli("stop", "--all", store=store.root)
