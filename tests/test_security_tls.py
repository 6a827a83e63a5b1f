"""serve --tls-cert/--tls-key over real HTTPS on 127.0.0.1, with a CA and certificates made in the test."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
from pathlib import Path

import pytest
import requests
from conftest import run_cli

from maasctl.errors import InvalidInput
from maasctl.refs import parse_ref
from maasctl.serving.server import ServeOptions, ServerThread, build_app
from maasctl.serving.tls import tls_files
from maasctl.store import Store
from maasctl.tf.servable import store_loader

X = [[5.1, 3.5, 1.4, 0.2]]


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(directory: Path, name: str = "test CA"):
    """A self-signed CA: (cert, key, cert path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / f"{name.replace(' ', '-')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def make_server_cert(directory: Path, ca_cert, ca_key) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 and localhost signed by the CA: (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key, ca_path = make_ca(d)
    cert, key = make_server_cert(d, ca_cert, ca_key)
    _, _, other_ca = make_ca(d, "other CA")
    return {"ca": ca_path, "cert": cert, "key": key, "other_ca": other_ca, "dir": d}


# -- bad certificate or key: one line, exit 2, before binding -------------------------------------------
def test_tls_files_are_checked(pki, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    assert tls_files(None, None) is None
    good = tls_files(pki["cert"], pki["key"])
    assert good.cert == pki["cert"].resolve()
    other_key = tmp_path / "other.key"
    other_key.write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        ((pki["cert"], None), "--tls-cert and --tls-key go together"),
        ((tmp_path / "missing.pem", pki["key"]), f"--tls-cert {tmp_path / 'missing.pem'}: no such file"),
        ((pki["cert"], tmp_path), f"--tls-key {tmp_path}: is a directory"),
        ((pki["cert"], other_key), f"--tls-key {other_key} does not belong to the certificate"),
        ((garbage, pki["key"]), f"--tls-cert {garbage}: not a usable PEM certificate"),
        ((pki["cert"], garbage), f"--tls-key {garbage}: not a usable PEM private key"),
    ]
    for args, message in cases:
        with pytest.raises(InvalidInput) as info:
            tls_files(*args)
        assert str(info.value).startswith(message), (args, str(info.value))


def test_serve_with_a_bad_key_fails_before_binding(pki, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    other_key = tmp_path / "other.key"
    other_key.write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
    with socket.socket() as taken:  # binding first would fail with "port in use" (exit 1) instead
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cli("serve", "anything", "--port", str(port), "--tls-cert", str(pki["cert"]),
                    "--tls-key", str(other_key), store=tmp_path / "store")
    assert r.returncode == 2
    assert r.stderr == f"Error: --tls-key {other_key} does not belong to the certificate in --tls-cert {pki['cert']}\n"
    r = run_cli("serve", "anything", "--tls-cert", str(pki["cert"]), store=tmp_path / "store")
    assert r.returncode == 2 and r.stderr.startswith("Error: --tls-cert and --tls-key go together")
    r = run_cli("serve", "anything", "--backend", "tfserving", "--tls-cert", str(pki["cert"]),
                "--tls-key", str(pki["key"]), store=tmp_path / "store")
    assert r.returncode == 2 and "need --backend maasctl" in r.stderr


# -- HTTPS only, over real sockets -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_server(tf, models, pki, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("tls") / "store")
    store.register(models["small"], "small")
    options = ServeOptions()
    server = ServerThread(build_app(store, [parse_ref("small")], options, loader=store_loader(store)),
                          tls=tls_files(pki["cert"], pki["key"])).start()
    server.wait_ready()
    yield server.url, store
    server.stop()


@pytest.mark.tf
def test_https_with_the_ca_and_nothing_else(tls_server, pki):
    url, _ = tls_server
    assert url.startswith("https://127.0.0.1:")
    body = json.dumps({"instances": X})
    r = requests.post(url + "/v1/models/small:predict", data=body, verify=str(pki["ca"]), timeout=30)
    assert r.status_code == 200 and len(r.json()["predictions"][0]) == 3
    with pytest.raises(requests.exceptions.SSLError):  # a CA that did not sign the server's certificate
        requests.get(url + "/healthz", verify=str(pki["other_ca"]), timeout=30)
    with pytest.raises(requests.exceptions.SSLError):  # the system store does not know our CA
        requests.get(url + "/healthz", timeout=30)
    plain = "http://" + url[len("https://"):]
    with pytest.raises(requests.exceptions.ConnectionError):  # no plain HTTP on the TLS port
        requests.get(plain + "/healthz", timeout=30)


@pytest.mark.tf
def test_graceful_stop_does_not_wait_for_an_idle_tls_client(tf, saved_models, pki, tmp_path):
    """A client holding an idle keep-alive TLS connection used to hold the drain for asyncio's 30 s
    ssl_shutdown_timeout (waiting for its close_notify); the stop finishes without forcing anything."""
    store = Store(tmp_path / "store")
    store.register(saved_models["small"], "small")
    server = ServerThread(build_app(store, [parse_ref("small")], ServeOptions(), loader=store_loader(store)),
                          tls=tls_files(pki["cert"], pki["key"])).start()
    server.wait_ready()
    with requests.Session() as session:  # its pool keeps the connection open and idle, never answering
        assert session.get(server.url + "/healthz", verify=str(pki["ca"]), timeout=30).status_code == 200
        server.server.should_exit = True
        server.thread.join(timeout=10)
        drained = not server.thread.is_alive()
        server.stop()
    assert drained, "the graceful stop waited on the idle TLS connection"


@pytest.mark.tf
def test_predict_cacert(tls_server, pki, tmp_path):
    url, store = tls_server
    (tmp_path / "rows.json").write_text(json.dumps(X))
    r = run_cli("predict", "--url", url, "--model", "small", "--input", str(tmp_path / "rows.json"),
                "--cacert", str(pki["ca"]), store=store.root)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["predictions"]) == 1
    r = run_cli("predict", "--url", url, "--model", "small", "--input", str(tmp_path / "rows.json"),
                "--cacert", str(pki["other_ca"]), store=store.root)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"Error: TLS with {url} failed: ") and "certificate verify failed" in r.stderr
    r = run_cli("predict", "--url", url, "--model", "small", "--input", str(tmp_path / "rows.json"),
                store=store.root)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "pass --cacert FILE" in r.stderr
    r = run_cli("predict", "--url", url, "--model", "small", "--input", str(tmp_path / "rows.json"),
                "--cacert", str(tmp_path / "rows.json"), store=store.root)
    assert r.returncode == 2 and r.stderr == f"Error: --cacert {tmp_path / 'rows.json'}: not a PEM certificate file\n"


@pytest.mark.tf
@pytest.mark.slow
def test_detached_tls_server_with_token(pki, models, tmp_path):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    token = "tok-tls-0b5e"
    r = run_cli("serve", "small", "--port", "0", "--grpc-port", "0", "--detach", "--json", "--tls-cert",
                str(pki["cert"]), "--tls-key", str(pki["key"]), store=store.root, env={"MAASCTL_TOKEN": token})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    try:
        assert doc["url"].startswith("https://127.0.0.1:")
        ps = run_cli("ps", "--json", store=store.root)
        assert [s["url"] for s in json.loads(ps.stdout)] == [doc["url"]]
        assert doc["url"] in run_cli("ps", store=store.root).stdout
        (tmp_path / "rows.json").write_text(json.dumps(X))
        # found through the store's server records; over its gRPC port, TLS too, verified against the CA
        p = run_cli("predict", "--model", "small", "--input", str(tmp_path / "rows.json"), "--cacert", str(pki["ca"]),
                    store=store.root, env={"MAASCTL_TOKEN": token})
        assert p.returncode == 0, p.stderr
        assert f"on server {doc['id']} at grpcs://{doc['grpc']}" in p.stderr
        assert len(json.loads(p.stdout)["predictions"]) == 1
        assert requests.get(doc["url"] + "/readyz", verify=str(pki["ca"]), timeout=30).status_code == 401
    finally:
        run_cli("stop", doc["id"], store=store.root)
