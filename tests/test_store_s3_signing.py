"""Signatures through an S3 store (moto's server on 127.0.0.1): `maas.sig` travels with push and pull, `sign`,
`verify --key`, `show`, `register --require-signed` and `serve --require-signed` work against s3://, and a
version whose bucket objects were rewritten (files and maas.json both, as someone with write access to the
bucket could) fails on the signature."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import cli
from test_registry_backends import bucket_of, snapshot

from maasctl.store import Store, signing
from maasctl.store import manifest as mf
from maasctl.store.hashing import content_sha256

pytest.importorskip("model_signing")
pytestmark = pytest.mark.tf  # real SavedModels (the `models` fixture)
VARIABLES = "variables/variables.data-00000-of-00001"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    signing.generate_key(d / "release.pem", d / "release.pub.pem")
    signing.generate_key(d / "other.pem", d / "other.pub.pem")
    return {"release": d / "release.pem", "pub": str(d / "release.pub.pem"), "other": d / "other.pem"}


def _rewrite_behind_the_store(spec: str, rel: str) -> None:
    """Change one object of small@1 and rewrite maas.json to match: digests pass, only a signature can tell."""
    import boto3

    s3 = boto3.client("s3")
    bucket, prefix = bucket_of(spec)
    base = f"{prefix}models/small/1/"
    data = bytearray(s3.get_object(Bucket=bucket, Key=base + rel)["Body"].read())
    data[-1] ^= 1
    s3.put_object(Bucket=bucket, Key=base + rel, Body=bytes(data))
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=base + "maas.json")["Body"].read())
    for f in manifest["files"]:
        if f["path"] == rel:
            f["sha256"] = hashlib.sha256(data).hexdigest()
    manifest["content_sha256"] = content_sha256(mf.file_entries(manifest))
    s3.put_object(Bucket=bucket, Key=base + "maas.json", Body=json.dumps(manifest).encode())


def test_signatures_travel_through_s3(s3_store_url, tmp_path, models, keys):
    from maasctl.store.hashing import hash_tree

    local = Store(tmp_path / "local")
    local.register(models["small"], "small")
    signing.sign_version(local, "small@1", keys["release"])
    fingerprint = signing.public_key_fingerprint(keys["pub"])

    r = cli("--store", str(local.root), "push", "small@1", "--to", s3_store_url, "--json")
    assert r.returncode == 0, r.stderr
    r = cli("--store", s3_store_url, "verify", "small@1", "--key", keys["pub"], "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    show = json.loads(cli("--store", s3_store_url, "show", "small@1", "--json").stdout)
    assert show["signing"] == {"signed": True, "key_fingerprint": fingerprint}
    assert json.loads(cli("--store", s3_store_url, "inspect", "small@1", "--json").stdout)["signing"]["signed"]

    # pulled back into another local store, it still verifies there (and its maas.sig is in place)
    back = tmp_path / "back"
    r = cli("--store", str(back), "pull", "small@1", "--from", s3_store_url, "--json")
    assert r.returncode == 0, r.stderr
    assert (back / "models" / "small" / "1" / "maas.sig").read_bytes() == (local.version_dir("small", 1)
                                                                          / "maas.sig").read_bytes()
    assert cli("--store", str(back), "verify", "small@1", "--key", keys["pub"]).returncode == 0

    # register --require-signed into S3: a signed directory goes in, an unsigned one is refused, bucket unchanged
    r = cli("--store", s3_store_url, "register", str(local.version_dir("small", 1)), "--name", "copy",
            "--require-signed", "--key", keys["pub"], "--json")
    assert r.returncode == 0, r.stderr
    assert cli("--store", s3_store_url, "verify", "copy@1", "--key", keys["pub"]).returncode == 0
    before = snapshot(s3_store_url)
    r = cli("--store", s3_store_url, "register", str(models["small_b"]), "--name", "copy", "--require-signed",
            "--key", keys["pub"])
    assert r.returncode == 1 and "is not signed (--require-signed registers only" in r.stderr
    assert snapshot(s3_store_url) == before

    # sign in place on S3 (the other key): the signature replaces the old one, the files stay
    r = cli("--store", s3_store_url, "sign", "copy@1", "--key", str(keys["other"]))
    assert r.returncode == 0, r.stderr
    r = cli("--store", s3_store_url, "verify", "copy@1", "--key", keys["pub"])
    assert r.returncode == 1 and "which is not trusted" in r.stderr

    # a version rewritten in the bucket behind the store's back: digests agree, the signature does not
    _rewrite_behind_the_store(s3_store_url, VARIABLES)
    assert cli("--store", s3_store_url, "verify", "small@1").returncode == 0  # the manifest was rewritten too
    r = cli("--store", s3_store_url, "verify", "small@1", "--key", keys["pub"])
    assert r.returncode == 1 and f"small@1: {VARIABLES} does not match the signature" in r.stderr.splitlines()
    r = cli("--store", s3_store_url, "serve", "small@1", "--port", "0", "--require-signed", "--key", keys["pub"])
    assert (r.returncode, r.stderr) == (1, f"Error: small@1: {VARIABLES} does not match the signature\n")
    assert content_sha256(hash_tree(models["small"], skip=frozenset({"maas.json"}))) != \
        json.loads(cli("--store", s3_store_url, "show", "small@1", "--json").stdout)["sha256"]

    # an unsigned S3 version is refused by serve --require-signed before anything loads
    cli("--store", s3_store_url, "register", str(models["small_b"]), "--name", "plain")
    r = cli("--store", s3_store_url, "serve", "plain", "--port", "0", "--require-signed", "--key", keys["pub"])
    assert r.returncode == 1
    assert r.stderr == "Error: plain@1 is not signed (serve --require-signed loads only signed versions)\n"
