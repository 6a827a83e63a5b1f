"""Registry behaviour both store kinds share (a directory, and s3:// on a real moto server on 127.0.0.1),
through real `python -m maasctl` subprocesses: same output, same JSON keys, same exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, tree_snapshot

from maasctl.store.types import who

VERSION_KEYS = {"ref", "name", "version", "aliases", "created_at", "sha256", "size", "path", "source",
                "description", "tags", "metrics", "lineage", "task", "feature_names", "class_names"}
EVENT_KEYS = {"at", "event", "version", "alias", "from_version", "to_version", "who"}
DATA_FILE = "variables/variables.data-00000-of-00001"
pytestmark = pytest.mark.tf  # real SavedModels (the `models` fixture)


def bucket_of(spec: str) -> tuple[str, str]:
    bucket, _, prefix = spec[len("s3://"):].partition("/")
    return bucket, prefix + "/"


def snapshot(spec: str) -> dict[str, bytes]:
    """Every object (or file) of a store with its bytes: 'unchanged' means equal snapshots."""
    if not spec.startswith("s3://"):
        return tree_snapshot(Path(spec))
    import boto3

    s3 = boto3.client("s3")
    bucket, _ = bucket_of(spec)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def tamper(spec: str, rel: str) -> None:
    """Flip one bit of a stored file (bytes rewritten in place / object overwritten in the bucket)."""
    if not spec.startswith("s3://"):
        target = Path(spec) / rel
        data = bytearray(target.read_bytes())
        data[-1] ^= 1
        target.write_bytes(bytes(data))
        return
    import boto3

    s3 = boto3.client("s3")
    bucket, prefix = bucket_of(spec)
    data = bytearray(s3.get_object(Bucket=bucket, Key=prefix + rel)["Body"].read())
    data[-1] ^= 1
    s3.put_object(Bucket=bucket, Key=prefix + rel, Body=bytes(data))


@pytest.fixture
def populated(any_store, models):
    from maasctl.store import open_store

    store = open_store(any_store)  # in-process: the commands under test run as subprocesses
    assert store.register(models["small"], "iris", aliases=["candidate"]).info.version == 1
    assert store.register(models["small_b"], "iris").info.version == 2
    return any_store


def test_register_list_show(any_store, models):
    r = run_cli("register", str(models["small"]), "--name", "iris", store=any_store)
    assert (r.returncode, r.stdout, r.stderr) == (0, "iris@1\n", "")
    doc = json.loads(run_cli("register", str(models["small"]), "--name", "iris", "--json", store=any_store).stdout)
    assert set(doc) == VERSION_KEYS | {"created"}
    assert (doc["version"], doc["created"]) == (1, False)
    r = run_cli("register", str(models["small_b"]), "--name", "iris", "--alias", "candidate", "--tag", "team=ml",
                "--json", store=any_store)
    doc = json.loads(r.stdout)
    assert (doc["version"], doc["created"], doc["tags"], doc["aliases"]) == (2, True, {"team": "ml"}, ["candidate"])
    r = run_cli("list", store=any_store)
    assert r.stdout.splitlines() == ["NAME  LATEST  VERSIONS  ALIASES", "iris  2       2         candidate->2"]
    models_doc = json.loads(run_cli("list", "--json", store=any_store).stdout)
    assert [set(m) for m in models_doc] == [{"name", "latest", "versions", "aliases", "created_at"}]
    versions = json.loads(run_cli("list", "iris", "--json", store=any_store).stdout)
    assert [(v["version"], v["aliases"]) for v in versions] == [(1, []), (2, ["candidate"])]
    assert all(set(v) == VERSION_KEYS for v in versions)
    show = json.loads(run_cli("show", "iris@candidate", "--json", store=any_store).stdout)
    assert show["version"] == 2 and show["signatures"]["serving_default"]["inputs"]["features"]["shape"] == [-1, 4]
    assert "serving_default  input   features  float32[-1, 4]" in run_cli("show", "iris", store=any_store).stdout


def test_alias_moves_history_and_expect_version(populated):
    r = run_cli("alias", "set", "iris@2", "candidate", store=populated)
    assert (r.returncode, r.stdout) == (0, "iris@candidate -> 2 (was 1)\n")
    r = run_cli("alias", "set", "iris@1", "candidate", "--expect-version", "1", store=populated)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "points at 2, not 1 as expected" in r.stderr
    r = run_cli("alias", "set", "iris@1", "candidate", "--expect-version", "2", "--json", store=populated)
    assert json.loads(r.stdout) == {"name": "iris", "alias": "candidate", "version": 1, "previous": 2}
    hist = json.loads(run_cli("alias", "history", "iris", "candidate", "--json", store=populated).stdout)
    assert [(e["from_version"], e["to_version"]) for e in hist] == [(None, 1), (1, 2), (2, 1)]
    assert all(EVENT_KEYS <= set(e) for e in hist)
    assert {e["who"] for e in hist} == {who()}  # user@host, on both store kinds
    assert run_cli("alias", "rm", "iris", "candidate", store=populated).returncode == 0
    r = run_cli("show", "iris@candidate", store=populated)
    assert r.returncode == 3
    assert r.stderr == ("Error: model 'iris' has no alias 'candidate' (it has no aliases). "
                        "See: maasctl alias set iris@VERSION candidate\n")
    events = [e["event"] for e in json.loads(run_cli("alias", "history", "iris", "--json", store=populated).stdout)]
    assert events == ["registered", "alias_set", "registered", "alias_set", "alias_set", "alias_removed"]


def test_rm_refuses_aliased_version(populated, models):
    r = run_cli("rm", "iris@1", store=populated)
    assert r.returncode == 1 and "alias(es) candidate" in r.stderr and r.stderr.count("\n") == 1
    assert run_cli("rm", "iris@1", "--force", store=populated).returncode == 0
    assert run_cli("show", "iris@1", store=populated).returncode == 3
    assert [v["version"] for v in json.loads(run_cli("list", "iris", "--json", store=populated).stdout)] == [2]
    r = run_cli("register", str(models["multi"]), "--name", "iris", store=populated)
    assert r.stdout == "iris@3\n"  # numbers are never reused


@pytest.mark.parametrize("args,code,message", [
    (["show", "iris@7"], 3, "model 'iris' has no version 7 (latest is 2). See: maasctl list iris"),
    (["show", "nosuch"], 3, "model 'nosuch' not found"),
    (["alias", "set", "iris@1", "42"], 2, "an alias cannot be all digits"),
    (["alias", "set", "iris@9", "prod"], 3, "no version 9"),
    (["alias", "rm", "iris", "prod"], 3, "has no alias 'prod'"),
    (["rm", "iris@prod"], 3, "has no alias 'prod'"),
    (["rm", "iris"], 2, "say which version to remove: iris@2"),
    (["register", "{small}", "--name", "Iris!"], 2, "invalid model name 'Iris!'"),
])
def test_bad_input_one_line_and_store_unchanged(populated, models, args, code, message):
    args = [a.format(small=models["small"]) for a in args]
    before = snapshot(populated)
    r = run_cli(*args, store=populated)
    assert r.returncode == code, r.stderr
    assert r.stderr.startswith("Error: ") and message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr and r.stdout == ""
    assert snapshot(populated) == before


def test_verify_names_a_tampered_file(populated):
    assert run_cli("verify", store=populated).returncode == 0
    tamper(populated, f"models/iris/2/{DATA_FILE}")
    r = run_cli("verify", store=populated)
    assert r.returncode == 1
    assert "iris@2: sha256 mismatch in " in r.stderr and DATA_FILE in r.stderr
    doc = json.loads(run_cli("verify", "--json", store=populated).stdout)
    assert doc["ok"] is False and [v["ok"] for v in doc["versions"]] == [True, False]
    r = run_cli("predict", "--local", "--model", "iris@2", store=populated, input='{"instances": [[1, 2, 3, 4]]}\n')
    assert r.returncode == 1 and "refusing to load" in r.stderr and DATA_FILE in r.stderr, r.stderr


def test_push_and_pull_between_stores(populated, tmp_path):
    other = str(tmp_path / "other")
    r = run_cli("push", "iris@candidate", "--to", other, "--alias", "prod", "--json", store=populated)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == VERSION_KEYS | {"created"}
    assert (doc["ref"], doc["created"], doc["aliases"]) == ("iris@1", True, ["prod"])
    again = json.loads(run_cli("push", "iris@1", "--to", other, "--json", store=populated).stdout)
    assert (again["ref"], again["created"]) == ("iris@1", False)
    r = run_cli("pull", "iris@2", "--from", populated, "--json", store=other)
    pulled = json.loads(r.stdout)
    assert pulled["ref"] == "iris@2" and pulled["sha256"] == json.loads(
        run_cli("show", "iris@2", "--json", store=populated).stdout)["sha256"]
    assert run_cli("verify", store=other).returncode == 0


def test_package_and_inspect_a_registered_version(populated, tmp_path):
    out = tmp_path / "iris.maas"
    r = run_cli("package", "iris@candidate", "-o", str(out), store=populated)
    assert r.returncode == 0, r.stderr
    shown = json.loads(run_cli("show", "iris@1", "--json", store=populated).stdout)
    inspected = json.loads(run_cli("inspect", "iris@1", "--json", store=populated).stdout)
    assert inspected["content_sha256"] == shown["sha256"]
    packaged = json.loads(run_cli("inspect", str(out), "--json", store=populated).stdout)
    assert packaged["content_sha256"] == shown["sha256"]
