"""Signed versions with OpenSSF model-signing: sign, verify, show/inspect, packages, and the policies of
`register --require-signed` and `serve --require-signed` (a real server on 127.0.0.1 following an alias)."""

from __future__ import annotations

import json
import stat
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import run_cli, tree_snapshot

from maasctl.errors import InvalidInput
from maasctl.refs import parse_ref
from maasctl.serving.server import ServeOptions, ServerThread, build_app
from maasctl.store import Store, signing
from maasctl.tf.servable import store_loader

pytest.importorskip("model_signing")
pytestmark = pytest.mark.tf
X = [[5.1, 3.5, 1.4, 0.2]]
VARIABLES = "variables/variables.data-00000-of-00001"


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name, curve in (("release", "P-256"), ("other", "P-384"), ("big", "P-521")):
        signing.generate_key(d / f"{name}.pem", d / f"{name}.pub.pem", curve)
        out[name], out[f"{name}.pub"] = d / f"{name}.pem", d / f"{name}.pub.pem"
    return out


def flip_byte(path: Path, offset: int = 0) -> None:
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_keygen_writes_the_private_key_0600(tmp_path):
    r = run_cli("keygen", str(tmp_path / "k.pem"), str(tmp_path / "k.pub.pem"), "--curve", "P-384", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert doc["key_fingerprint"] == signing.public_key_fingerprint(tmp_path / "k.pub.pem")
    assert signing.private_key_fingerprint(tmp_path / "k.pem") == doc["key_fingerprint"]
    again = run_cli("keygen", str(tmp_path / "k.pem"), str(tmp_path / "k2.pub.pem"))
    assert again.returncode == 2 and "already exists" in again.stderr and not (tmp_path / "k2.pub.pem").exists()


def test_key_files_are_checked(tmp_path, keys):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    rsa_key = tmp_path / "rsa.pem"
    rsa_key.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    k1 = tmp_path / "k1.pem"
    k1.write_bytes(ec.generate_private_key(ec.SECP256K1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cases = [
        (lambda: signing.private_key_fingerprint(rsa_key), "model-signing uses EC keys on P-256, P-384, P-521"),
        (lambda: signing.private_key_fingerprint(k1), "a secp256k1 key"),
        (lambda: signing.private_key_fingerprint(keys["release.pub"]), "a public key; signing needs the private"),
        (lambda: signing.public_key_fingerprint(keys["release"]), "a private key; verifying needs only the public"),
        (lambda: signing.private_key_fingerprint(tmp_path / "nope.pem"), "no such file"),
    ]
    for call, message in cases:
        with pytest.raises(InvalidInput) as info:
            call()
        assert message in str(info.value)


def test_trusted_keys_from_the_environment(keys):
    env = {"MAASCTL_TRUSTED_KEYS": f"{keys['other.pub']}:{keys['release.pub']}"}
    got = signing.trusted_keys(env=env)
    assert [k.fingerprint for k in got] == [signing.public_key_fingerprint(keys[k]) for k in ("other.pub", "release.pub")]
    assert signing.trusted_keys([keys["big.pub"]], env=env)[0].path == keys["big.pub"].resolve()  # --key wins
    with pytest.raises(InvalidInput, match="MAASCTL_TRUSTED_KEYS: .*no such file"):
        signing.trusted_keys(env={"MAASCTL_TRUSTED_KEYS": "/nonexistent.pem"})


# -- sign, verify, show, inspect ----------------------------------------------------------------------------
def test_sign_verify_and_a_flipped_byte(tmp_path, models, keys):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    unsigned = run_cli("show", "small@1", "--json", store=store.root)
    assert json.loads(unsigned.stdout)["signing"] == {"signed": False, "key_fingerprint": None}
    assert "\nsigned   no\n" in run_cli("show", "small@1", store=store.root).stdout
    assert "signing" not in json.loads(run_cli("inspect", "small@1", "--json", store=store.root).stdout)
    assert "signed          no" in run_cli("inspect", "small@1", store=store.root).stdout
    r = run_cli("verify", "small@1", "--key", str(keys["release.pub"]), store=store.root)
    assert r.returncode == 1 and "small@1: not signed (sign it: maasctl sign small@1 --key PRIVATE.pem)" in r.stderr

    r = run_cli("sign", "small@1", "--key", str(keys["release"]), "--json", store=store.root)
    assert r.returncode == 0, r.stderr
    fingerprint = signing.public_key_fingerprint(keys["release.pub"])
    assert json.loads(r.stdout) == {"ref": "small@1", "signed": True, "key_fingerprint": fingerprint}
    assert (store.version_dir("small", 1) / "maas.sig").is_file()
    assert store.verify("small@1")[0].ok  # the bundle sits beside the files, not among them

    r = run_cli("verify", "small@1", "--key", str(keys["release.pub"]), "--json", store=store.root)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True
    r = run_cli("verify", "small@1", "--key", str(keys["other.pub"]), store=store.root)
    assert r.returncode == 1 and f"signed by key sha256:{fingerprint[:16]}, which is not trusted" in r.stderr
    show = run_cli("show", "small@1", store=store.root)
    assert f"signed   yes, by key sha256:{fingerprint[:16]}" in show.stdout
    doc = json.loads(run_cli("inspect", "small@1", "--json", store=store.root).stdout)
    assert doc["signing"] == {"signed": True, "key_fingerprint": fingerprint}

    flip_byte(store.version_dir("small", 1) / VARIABLES, 10)
    r = run_cli("verify", "small@1", "--key", str(keys["release.pub"]), store=store.root)
    assert r.returncode == 1
    assert f"small@1: {VARIABLES} does not match the signature" in r.stderr.splitlines()
    r = run_cli("sign", "small@1", "--key", str(keys["release"]), store=store.root)
    assert r.returncode == 1 and r.stderr.startswith(f"Error: small@1 is damaged (sha256 mismatch in {VARIABLES}")


@pytest.mark.parametrize("curve_key", ["other", "big"])
def test_other_curves(tmp_path, models, keys, curve_key):
    store = Store(tmp_path / "store")
    info = store.register(models["small"], "small").info
    signing.sign_version(store, "small@1", keys[curve_key])
    trusted = signing.trusted_keys([keys["release.pub"], keys[f"{curve_key}.pub"]])
    assert signing.verify_directory(info.path, trusted, "small@1").path == keys[f"{curve_key}.pub"].resolve()


def test_an_unsigned_extra_file_fails_verification(tmp_path, models, keys):
    store = Store(tmp_path / "store")
    info = store.register(models["small"], "small").info
    signing.sign_version(store, "small@1", keys["release"])
    (info.path / "assets").mkdir(exist_ok=True)
    (info.path / "assets" / "extra.txt").write_text("planted")
    problems = signing.signature_problems(store, info, signing.trusted_keys([keys["release.pub"]]))
    assert problems == ["unsigned file(s) assets/extra.txt (not covered by the signature)"]


# -- packages and register --require-signed -----------------------------------------------------------------
def test_a_package_carries_its_signature_to_a_second_store(tmp_path, models, keys):
    first, second = Store(tmp_path / "first"), Store(tmp_path / "second")
    first.register(models["small"], "small")
    first.register(models["small_b"], "small")  # v2, so the second store's number differs
    signing.sign_version(first, "small@2", keys["release"])
    r = run_cli("package", "small@2", "--output", str(tmp_path / "small.maas"), store=first.root)
    assert r.returncode == 0, r.stderr
    insp = json.loads(run_cli("inspect", str(tmp_path / "small.maas"), "--json").stdout)
    assert insp["signing"]["signed"] is True and "maas.sig" not in [f["path"] for f in insp["files"]]

    pub = str(keys["release.pub"])
    r = run_cli("register", str(tmp_path / "small.maas"), "--require-signed", "--key", pub, store=second.root)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "small@1\n"
    r = run_cli("verify", "small@1", "--key", pub, store=second.root)
    assert r.returncode == 0, r.stderr
    # and on again: a package made in the second store verifies in a third
    r = run_cli("package", "small@1", "--output", str(tmp_path / "again.maas"), store=second.root)
    assert r.returncode == 0, r.stderr
    r = run_cli("register", str(tmp_path / "again.maas"), "--require-signed", store=tmp_path / "third",
                env={"MAASCTL_TRUSTED_KEYS": pub})
    assert r.returncode == 0, r.stderr


def test_register_require_signed_refuses_and_leaves_the_store_unchanged(tmp_path, models, keys):
    store = Store(tmp_path / "store")
    store.register(models["small_b"], "other")
    before = tree_snapshot(store.root)
    pub = str(keys["release.pub"])
    r = run_cli("register", str(models["small"]), "--name", "small", "--require-signed", "--key", pub, store=store.root)
    assert r.returncode == 1
    assert r.stderr.startswith(f"Error: {models['small']} is not signed (--require-signed registers only")
    assert r.stderr.count("\n") == 1
    # a signed source whose files were changed afterwards
    src = tmp_path / "src"
    import shutil

    shutil.copytree(models["small"], src)
    (src / "maas.sig").write_bytes(signing.sign_directory(src, keys["release"]))
    flip_byte(src / VARIABLES, 3)
    r = run_cli("register", str(src), "--name", "small", "--require-signed", "--key", pub, store=store.root)
    assert r.returncode == 1 and r.stderr == f"Error: {src}: {VARIABLES} does not match the signature\n"
    r = run_cli("register", str(src), "--name", "small", "--require-signed", store=store.root)
    assert r.returncode == 2 and "needs a trusted public key" in r.stderr
    assert tree_snapshot(store.root) == before


# -- serve --require-signed ----------------------------------------------------------------------------------
def test_serve_refuses_an_unsigned_or_tampered_version(tmp_path, models, keys):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    pub = str(keys["release.pub"])
    r = run_cli("serve", "small", "--port", "0", "--require-signed", "--key", pub, store=store.root)
    assert r.returncode == 1
    assert r.stderr == ("Error: small@1 is not signed (serve --require-signed loads only signed versions)\n")
    signing.sign_version(store, "small@1", keys["release"])
    flip_byte(store.version_dir("small", 1) / "saved_model.pb", 40)
    r = run_cli("serve", "small", "--port", "0", "--require-signed", store=store.root,
                env={"MAASCTL_TRUSTED_KEYS": pub})
    assert r.returncode == 1 and r.stderr == "Error: small@1: saved_model.pb does not match the signature\n"


def test_policy_server_keeps_the_signed_version_when_the_alias_moves_to_an_unsigned_one(tmp_path, models, keys):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small", aliases=["prod"])
    signing.sign_version(store, "small@1", keys["release"])
    options = ServeOptions(trusted_keys=signing.trusted_keys([keys["release.pub"]]), poll_interval=0.1)
    server = ServerThread(build_app(store, [parse_ref("small@prod")], options, loader=store_loader(store))).start()
    try:
        server.wait_ready()
        url = server.url + "/v1/models/small/labels/prod:predict"
        body = json.dumps({"instances": X})
        first = requests.post(url, data=body, timeout=30).json()["predictions"]
        failures, answers, stop = [], [], threading.Event()

        def hammer() -> None:
            with requests.Session() as s:
                while not stop.is_set():
                    r = s.post(url, data=body, timeout=30)
                    (answers if r.status_code == 200 else failures).append(r.json())

        thread = threading.Thread(target=hammer)
        thread.start()
        store.register(models["small_b"], "small")
        store.set_alias("small@2", "prod")  # an unsigned version
        deadline = time.monotonic() + 60
        while True:
            ready = requests.get(server.url + "/readyz", timeout=30)
            if ready.status_code != 200 or ready.json()["failed"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        stop.set()
        thread.join()
        # the old version keeps serving the ref, so the replica stays ready (in rotation); the body says why
        assert ready.status_code == 200, ready.text
        assert "small@2 is END (small@2 is not signed (serve --require-signed" in ready.json()["pending"][0]
        assert ready.json()["failed"] == [("small@2: small@2 is not signed (serve --require-signed loads only signed "
                                           "versions)")]
        assert failures == [] and answers and all(a["predictions"] == first for a in answers)
        status = requests.get(server.url + "/v1/models/small", timeout=30).json()["model_version_status"]
        assert {s["version"]: s["state"] for s in status} == {"2": "END", "1": "AVAILABLE"}
    finally:
        server.stop()
