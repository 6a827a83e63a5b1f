"""The S3 store's version index (store/s3index.py) and identical-content races (store/s3publish.py), against
moto's server on 127.0.0.1: a lost, stale or corrupt index never loses or invents a version, `list` costs a
constant number of requests, and writers of identical content at the same instant make one version."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
from test_registry_backends import bucket_of

pytestmark = pytest.mark.tf  # real SavedModels (the `models` fixture)


class Requests:
    """Counts the HTTP requests the process's S3 client sends (botocore's event hook; nothing is patched)."""

    def __init__(self, client) -> None:
        self.n = 0
        self.client = client
        client.meta.events.register("before-send.s3", self._count)

    def _count(self, **_) -> None:
        self.n += 1

    def close(self) -> None:
        self.client.meta.events.unregister("before-send.s3", self._count)


def _raw(spec: str):
    import boto3

    bucket, prefix = bucket_of(spec)
    return boto3.client("s3"), bucket, prefix


def _copy_version(spec: str, src: int, dst: int) -> None:
    """Commit version dst as a writer killed right after its commit would: files, claim, maas.json, no index."""
    s3, bucket, prefix = _raw(spec)
    base = f"{prefix}models/iris/{src}/"
    for o in s3.list_objects_v2(Bucket=bucket, Prefix=base)["Contents"]:
        rel = o["Key"][len(base):]
        body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        if rel == "maas.json":
            body = json.dumps({**json.loads(body), "version": dst}).encode()
        s3.put_object(Bucket=bucket, Key=f"{prefix}models/iris/{dst}/{rel}", Body=body)
    s3.put_object(Bucket=bucket, Key=f"{prefix}_maas/iris/claims/{dst:010d}.json", Body=b'{"version": %d}' % dst)


def _indexed(spec: str) -> list[int] | None:
    s3, bucket, prefix = _raw(spec)
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}_maas/iris/index.json")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return sorted(int(v) for v in json.loads(body)["versions"])


def test_lost_stale_or_corrupt_index_loses_no_version(s3_store_url, models):
    from maasctl.store import open_store

    store = open_store(s3_store_url)
    store.register(models["small"], "iris")
    store.register(models["small_b"], "iris", aliases=["prod"])
    assert _indexed(s3_store_url) == [1, 2]  # each commit adds its entry

    # a version committed whose writer died before indexing it: found by the delimiter LIST, then indexed
    _copy_version(s3_store_url, 1, 3)
    assert [v.version for v in open_store(s3_store_url).list_versions("iris")] == [1, 2, 3]
    assert _indexed(s3_store_url) == [1, 2, 3]

    # the index deleted, then garbage: rebuilt from the maas.json objects, same records
    s3, bucket, prefix = _raw(s3_store_url)
    before = [v.to_json() for v in open_store(s3_store_url).list_versions("iris")]
    s3.delete_object(Bucket=bucket, Key=f"{prefix}_maas/iris/index.json")
    assert [v.to_json() for v in open_store(s3_store_url).list_versions("iris")] == before
    s3.put_object(Bucket=bucket, Key=f"{prefix}_maas/iris/index.json", Body=b"{not json")
    assert [v.to_json() for v in open_store(s3_store_url).list_versions("iris")] == before
    assert _indexed(s3_store_url) == [1, 2, 3]

    # a version deleted behind the index's back (every object gone): dropped, not listed
    for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}models/iris/3/")["Contents"]:
        s3.delete_object(Bucket=bucket, Key=o["Key"])
    assert [v.version for v in open_store(s3_store_url).list_versions("iris")] == [1, 2]
    assert _indexed(s3_store_url) == [1, 2]
    assert open_store(s3_store_url).resolve("iris").version == 2

    # rm takes the version out of the index; gc rebuilds a wrong index from a full listing
    open_store(s3_store_url).remove("iris@1")
    assert _indexed(s3_store_url) == [2]
    _copy_version(s3_store_url, 2, 4)
    open_store(s3_store_url).gc()
    assert _indexed(s3_store_url) == [2, 4]


def test_list_costs_a_constant_number_of_requests(s3_store_url, models):
    from maasctl.store import open_store

    store = open_store(s3_store_url)
    store.register(models["small"], "iris", aliases=["prod"])
    counts = []
    for n in (2, 6):
        while len(store.list_versions("iris")) < n:
            _copy_version(s3_store_url, 1, len(store.list_versions("iris")) + 1)
        open_store(s3_store_url).list_versions("iris")  # indexes the new ones
        fresh = open_store(s3_store_url)
        counter = Requests(fresh.s3.client)
        try:
            assert len(fresh.list_versions("iris")) == n
        finally:
            counter.close()
        counts.append(counter.n)
    # index GET + delimiter LIST + alias LIST + one alias GET, whatever the number of versions
    assert counts == [4, 4]


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_identical_content_registered_at_the_same_instant_makes_one_version(kind, tmp_path, models, request):
    """The local store's write lock serialises identical registrations: the first creates NAME@1, the rest
    get it back with created=False. Threads hitting S3 at once must end the same way (no duplicate, no gap)."""
    from maasctl.store import open_store

    spec = str(tmp_path / "store") if kind == "local" else request.getfixturevalue("s3_store_url")
    open_store(spec).register(models["small_b"], "other")
    start = threading.Barrier(6)
    results: list = []
    errors: list = []

    def one(i: int) -> None:
        store = open_store(spec)
        start.wait()
        try:
            results.append(store.register(models["small"], "iris", aliases=[f"a{i}"]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(r.created for r in results) == [False] * 5 + [True]
    assert {r.info.version for r in results} == {1}
    store = open_store(spec)
    assert [v.version for v in store.list_versions("iris")] == [1]
    assert store.aliases("iris") == {f"a{i}": 1 for i in range(6)}
    again = store.register(models["small_b"], "iris")  # the next content gets the next number: no gap
    assert (again.created, again.info.version) == (True, 2)
    if kind == "s3":
        s3, bucket, prefix = _raw(spec)
        assert not s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}_maas/iris/content/").get("Contents")


def test_a_dead_writer_of_identical_content_is_taken_over(s3_store_url, models, monkeypatch):
    from maasctl.store import open_store, s3publish
    from maasctl.store.hashing import content_sha256, hash_tree

    monkeypatch.setattr(s3publish, "STALE", 0.5)
    digest = content_sha256(hash_tree(models["small"], skip=frozenset({"maas.json", "maas.sig"})))
    s3, bucket, prefix = _raw(s3_store_url)
    s3.put_object(Bucket=bucket, Key=f"{prefix}_maas/iris/content/{digest}.json",
                  Body=b'{"token": "dead", "who": "x@y", "at": "2020-01-01T00:00:00Z"}')
    result = open_store(s3_store_url).register(models["small"], "iris")
    assert (result.created, result.info.version) == (True, 1)
    assert not s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}_maas/iris/content/").get("Contents")

    # a writer on this machine whose process is gone (a killed push being re-run): taken over at once
    monkeypatch.setattr(s3publish, "STALE", 20.0)  # without the pid check this would take 20 s
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    digest_b = content_sha256(hash_tree(models["small_b"], skip=frozenset({"maas.json", "maas.sig"})))
    s3.put_object(Bucket=bucket, Key=f"{prefix}_maas/iris/content/{digest_b}.json", Body=json.dumps(
        {"token": "dead", "host": socket.gethostname(), "pid": int(dead.stdout)}).encode())
    t0 = time.monotonic()
    assert open_store(s3_store_url).register(models["small_b"], "iris").info.version == 2
    assert time.monotonic() - t0 < 10
