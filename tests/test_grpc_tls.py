"""gRPC over TLS: `serve --tls-cert/--tls-key` with `--grpc-port` serves TF Serving's gRPC API with the same
certificate and key as REST, TLS only. The stock TF Serving client code (PredictionServiceStub over
`grpc.secure_channel`) with the test's CA works, the bearer token is checked over it, a plaintext client and a
client with another CA fail, and `maasctl predict --grpc ... --cacert` works (and fails in one line without it).
"""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import test_security_tls
from conftest import run_cli

from maasctl.refs import parse_ref
from maasctl.serving.server import ServeOptions, ServerThread, build_app
from maasctl.serving.tls import tls_files
from maasctl.store import Store
from maasctl.tf.servable import store_loader

pytestmark = pytest.mark.tf
pki = test_security_tls.pki  # the same fixture: a CA, a server certificate for 127.0.0.1/localhost, another CA
X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]], dtype=np.float32)
TOKEN = "tok-grpc-tls-7d1c"


@pytest.fixture(scope="module")
def tls_grpc(tf, models, pki, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("grpc-tls") / "store")
    store.register(models["small"], "small")
    app = build_app(store, [parse_ref("small")], ServeOptions(token=TOKEN), loader=store_loader(store))
    server = ServerThread(app, tls=tls_files(pki["cert"], pki["key"]), grpc_port=0).start()
    server.wait_ready()
    want = tf.saved_model.load(str(store.version_dir("small", 1))).signatures["serving_default"](features=X)
    yield server, store, want["output_0"].numpy()
    server.stop()


def _stub_predict(tf, channel, token: str | None):
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "small"
    req.inputs["features"].CopyFrom(tf.make_tensor_proto(X))
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, metadata=metadata, timeout=30)
    return tf.make_ndarray(resp.outputs["output_0"])


def test_stock_client_over_tls_with_the_token(tls_grpc, pki, tf):
    server, _, want = tls_grpc
    port = server.grpc_address.rsplit(":", 1)[1]
    credentials = grpc.ssl_channel_credentials(pki["ca"].read_bytes())
    for target in (f"127.0.0.1:{port}", f"localhost:{port}"):  # the certificate names both
        with grpc.secure_channel(target, credentials) as channel:
            np.testing.assert_allclose(_stub_predict(tf, channel, TOKEN), want, atol=1e-6)
            with pytest.raises(grpc.RpcError) as err:
                _stub_predict(tf, channel, None)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as err:
                _stub_predict(tf, channel, "wrong")
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_plaintext_or_another_ca_fails(tls_grpc, pki, tf):
    server, _, _ = tls_grpc
    with grpc.insecure_channel(server.grpc_address) as channel:  # no plaintext on the TLS port
        with pytest.raises(grpc.RpcError) as err:
            _stub_predict(tf, channel, TOKEN)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    other = grpc.ssl_channel_credentials(pki["other_ca"].read_bytes())
    with grpc.secure_channel(server.grpc_address, other) as channel:
        with pytest.raises(grpc.RpcError) as err:
            _stub_predict(tf, channel, TOKEN)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_predict_grpc_cacert(tls_grpc, pki, tmp_path):
    server, store, want = tls_grpc
    address = server.grpc_address
    data = tmp_path / "in.json"
    data.write_text(json.dumps(X.tolist()))
    env = {"MAASCTL_TOKEN": TOKEN}
    base = ("predict", "--grpc", address, "--model", "small", "-i", str(data), "--format", "jsonl")
    ok = run_cli(*base, "--cacert", str(pki["ca"]), store=store.root, env=env)
    assert ok.returncode == 0, ok.stderr
    np.testing.assert_allclose([json.loads(line)["output_0"] for line in ok.stdout.splitlines()], want, atol=1e-6)

    plain = run_cli(*base, store=store.root, env=env)
    assert plain.returncode == 1 and plain.stderr.count("\n") == 1, plain.stderr
    assert plain.stderr == (f"Error: {address} serves gRPC over TLS and this call was plaintext: pass --cacert FILE "
                            "(the CA of its certificate), or grpcs://HOST:PORT\n")

    wrong = run_cli(*base, "--cacert", str(pki["other_ca"]), store=store.root, env=env)
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1, wrong.stderr
    assert wrong.stderr.startswith(f"Error: TLS with grpcs://{address} failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in wrong.stderr

    system = run_cli(*base[:2], "grpcs://" + address, *base[3:], store=store.root, env=env)  # the system's CAs
    assert system.returncode == 1 and "pass --cacert FILE for a private CA" in system.stderr, system.stderr

    no_token = run_cli(*base, "--cacert", str(pki["ca"]), store=store.root)
    assert no_token.returncode == 2 and "UNAUTHENTICATED" in no_token.stderr, no_token.stderr
