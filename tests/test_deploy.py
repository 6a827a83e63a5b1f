"""`maasctl deploy kserve|k8s` against a real S3 endpoint (moto's server on 127.0.0.1): the pinned prefix is
downloaded with KServe's own storage initializer (kserve-storage), the objects validated offline against the
Kubernetes OpenAPI schemas (kubernetes-validate) and, for the InferenceService, KServe's own CRD schema
(a trimmed copy in tests/data/kserve/, jsonschema)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli

from maasctl.store.hashing import hash_file

K8S_VERSION = "1.33.0"


@pytest.fixture
def s3_models(s3_store_url, saved_models) -> str:
    """iris@1 (small) and iris@2 (small_b) in a fresh S3 store, alias prod -> 1."""
    from maasctl.store import open_store

    store = open_store(s3_store_url)
    store.register(saved_models["small"], "iris", aliases=["prod"])
    store.register(saved_models["small_b"], "iris")
    return s3_store_url


def _objects(out_dir: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["kind"]: json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json"))}


def _deploy_kserve(store: str, out_dir: Path) -> dict[str, dict]:
    r = cli("deploy", "kserve", "iris@prod", "--store", store, "-o", str(out_dir), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    objs = _objects(out_dir)
    assert objs["InferenceService"]["spec"]["predictor"]["model"]["storageUri"] == doc["storage_uri"]
    return objs


def _kserve_download(uri: str, out: Path) -> Path:
    """KServe's storage initializer, in a fresh interpreter as in its init container: it forks a
    multiprocessing pool, and forking this threaded test process (moto's server, boto3's pools) deadlocked
    the pool's workers on a lock held at the fork."""
    pytest.importorskip("kserve_storage")
    out.mkdir()
    code = "import sys; from kserve_storage import Storage; Storage.download(sys.argv[1], sys.argv[2])"
    proc = subprocess.run([sys.executable, "-c", code, uri, str(out)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _check_only_version(store: str, downloaded: Path, version: int) -> None:
    """The download holds exactly one version folder, `version`, whose files match its maas.json digests."""
    from maasctl.store import open_store

    assert sorted(p.name for p in downloaded.iterdir()) == [str(version)]
    info = open_store(store).resolve(f"iris@{version}")
    manifest = open_store(store).manifest(info)
    vdir = downloaded / str(version)
    assert json.loads((vdir / "maas.json").read_text())["content_sha256"] == info.sha256
    got = {str(p.relative_to(vdir)): p for p in vdir.rglob("*") if p.is_file() and p.name != "maas.json"}
    # kserve-storage skips zero-byte objects (TF Serving needs none of them)
    want = {f["path"]: f for f in manifest["files"] if f["size"] > 0}
    assert set(got) == set(want)
    for rel, entry in want.items():
        h = hash_file(got[rel])
        assert (h.size, h.sha256) == (entry["size"], entry["sha256"]), rel


def test_kserve_pins_the_alias_version_and_rolls_forward_and_back(s3_models, tmp_path):
    from maasctl.store import open_store

    first = _deploy_kserve(s3_models, tmp_path / "d1")
    isvc = first["InferenceService"]
    uri1 = isvc["spec"]["predictor"]["model"]["storageUri"]
    assert uri1.endswith("/") and "/deployments/iris/1-" in uri1
    _check_only_version(s3_models, _kserve_download(uri1, tmp_path / "dl1"), 1)

    open_store(s3_models).set_alias("iris@2", "prod")
    uri2 = _deploy_kserve(s3_models, tmp_path / "d2")["InferenceService"]["spec"]["predictor"]["model"]["storageUri"]
    assert uri2 != uri1 and not uri2.startswith(uri1) and not uri1.startswith(uri2)
    _check_only_version(s3_models, _kserve_download(uri2, tmp_path / "dl2"), 2)

    # rollback to the lower number: the first prefix again (immutable, not copied twice), still holding only 1
    open_store(s3_models).set_alias("iris@1", "prod")
    r = cli("deploy", "kserve", "iris@prod", "--store", s3_models, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["storage_uri"] == uri1 and doc["copied"] == 0 and doc["version"] == 1
    _check_only_version(s3_models, _kserve_download(uri1, tmp_path / "dl3"), 1)


def test_kserve_download_loads_in_tensorflow(s3_models, tmp_path, tf, saved_models):
    import numpy as np

    uri = _deploy_kserve(s3_models, tmp_path / "d")["InferenceService"]["spec"]["predictor"]["model"]["storageUri"]
    loaded = tf.saved_model.load(str(_kserve_download(uri, tmp_path / "dl") / "1"))
    reference = tf.saved_model.load(str(saved_models["small"]))
    fn, ref_fn = loaded.signatures["serving_default"], reference.signatures["serving_default"]
    (key, spec), = fn.structured_input_signature[1].items()
    x = tf.constant(np.arange(8, dtype=np.float32).reshape(2, 4) / 8, dtype=spec.dtype)
    for k, v in fn(**{key: x}).items():
        np.testing.assert_allclose(v.numpy(), ref_fn(**{key: x})[k].numpy(), atol=1e-6)


def test_kserve_objects_are_valid(s3_models, tmp_path, monkeypatch):
    kv = pytest.importorskip("kubernetes_validate")
    r = cli("deploy", "kserve", "iris@prod", "--store", s3_models, "--s3-endpoint", "https://minio.data:9000",
            "--s3-region", "eu-west-1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["kind"] == "List"
    objs = {o["kind"]: o for o in doc["items"]}
    assert set(objs) == {"Secret", "ServiceAccount", "InferenceService"}
    for kind in ("Secret", "ServiceAccount"):
        kv.validate(objs[kind], K8S_VERSION, strict=True)
    secret, account, isvc = objs["Secret"], objs["ServiceAccount"], objs["InferenceService"]
    assert secret["metadata"]["annotations"] == {
        "serving.kserve.io/s3-endpoint": "minio.data:9000", "serving.kserve.io/s3-usehttps": "1",
        "serving.kserve.io/s3-region": "eu-west-1", "serving.kserve.io/s3-verifyssl": "1"}
    assert "data" not in secret and "stringData" not in secret  # credentials are referenced, never written
    assert "testing" not in r.stdout
    assert account["secrets"] == [{"name": secret["metadata"]["name"]}]
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _isvc_validator().iter_errors(isvc)]
    assert errors == []  # KServe's own CRD schema (trimmed copy), unknown fields refused
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    assert set(isvc["spec"]) == {"predictor"}
    predictor = isvc["spec"]["predictor"]
    assert predictor["serviceAccountName"] == account["metadata"]["name"]
    assert predictor["model"]["modelFormat"] == {"name": "tensorflow"}
    assert predictor["model"]["storageUri"].startswith(s3_models + "/deployments/iris/1-")
    assert predictor["model"]["storageUri"].endswith("/1-" + isvc["metadata"]["annotations"]["maasctl.io/sha256"][:12] + "/")
    # the metadata is a valid object's (ServiceAccount stands in for the CRD's ObjectMeta)
    kv.validate({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": isvc["metadata"]}, K8S_VERSION, strict=True)


def test_k8s_fleet_objects_are_valid_and_safe(s3_models, tmp_path):
    kv = pytest.importorskip("kubernetes_validate")
    out = tmp_path / "fleet"
    r = cli("deploy", "k8s", "iris@prod", "--store", s3_models, "--replicas", "3", "--image", "reg.example/maasctl:1",
            "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 4
    objs = _objects(out)
    assert set(objs) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for obj in objs.values():
        kv.validate(obj, K8S_VERSION, strict=True)
    dep = objs["Deployment"]
    pod = dep["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert dep["spec"]["replicas"] == 3 and c["image"] == "reg.example/maasctl:1"
    assert c["args"][:4] == ["serve", "iris@prod", "--host", "0.0.0.0"]
    assert c["args"][-2:] == ["--store", s3_models]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
    env = {e["name"]: e for e in c["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "iris-s3"
    assert env["MAASCTL_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "iris-token", "key": "token"}
    assert "testing" not in json.dumps(objs)  # the local credentials never land in a manifest
    cache = env["MAASCTL_CACHE"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[cache]]
    hpa, pdb = objs["HorizontalPodAutoscaler"], objs["PodDisruptionBudget"]
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["minReplicas"] == 3
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert objs["Service"]["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def _strict(schema: dict) -> dict:
    """The schema with unknown fields refused wherever it lists properties (the API server would silently drop
    them), except where Kubernetes keeps unknown fields."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _isvc_validator():
    """KServe's InferenceService v1beta1 schema, from its CRD (tests/data/kserve/: source commit in `$comment`)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parent / "data" / "kserve" / "inferenceservice.v1beta1.schema.json").read_text())
    return jsonschema.Draft7Validator(_strict(schema))


def test_kserve_schema_catches_broken_inference_services():
    """The CRD check above can fail: a wrong type, a missing required field, an unknown (misspelt) field."""
    from types import SimpleNamespace

    from maasctl.deploy.manifests import S3Settings, kserve_objects

    validator = _isvc_validator()
    info = SimpleNamespace(name="iris", ref="iris@1", version=1, sha256="ab" * 32)
    pinned = SimpleNamespace(info=info, storage_uri="s3://b/p/deployments/iris/1-abababababab/")
    (isvc,) = [o for o in kserve_objects("iris", pinned, S3Settings(None, "us-east-1")) if o["kind"] == "InferenceService"]
    assert list(validator.iter_errors(isvc)) == []
    model = isvc["spec"]["predictor"]["model"]
    for broken in ({**model, "storageUri": 7}, {**model, "modelFormat": {}}, {**model, "storageURI": "s3://b/p/"}):
        bad = {**isvc, "spec": {"predictor": {**isvc["spec"]["predictor"], "model": broken}}}
        assert list(validator.iter_errors(bad)), broken


def test_validation_catches_a_broken_object():
    """The validator used above can fail (a test that cannot fail is a defect)."""
    kv = pytest.importorskip("kubernetes_validate")
    from maasctl.deploy.manifests import FleetSpec, S3Settings, fleet_objects

    dep = fleet_objects("iris", "iris", FleetSpec("iris", "s3://b/p"), S3Settings(None, "us-east-1"))[0]
    dep["spec"]["replicas"] = "three"
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, K8S_VERSION, strict=True)


@pytest.mark.parametrize("kind", ["kserve", "k8s"])
def test_local_store_ref_is_refused_with_exit_2(kind, tmp_path, saved_models):
    store = tmp_path / "store"
    assert cli("register", str(saved_models["small"]), "--name", "iris", store=store).returncode == 0
    r = cli("deploy", kind, "iris", store=store)
    assert r.returncode == 2
    assert r.stderr.startswith("Error: ") and len(r.stderr.strip().splitlines()) == 1
    assert "push" in r.stderr and "s3://" in r.stderr


@pytest.mark.parametrize("kind", ["kserve", "k8s"])
def test_unknown_ref_is_exit_3_and_copies_nothing(kind, s3_models):
    import boto3
    from test_registry_backends import bucket_of

    for ref in ("nosuch", "iris@9", "iris@staging"):
        r = cli("deploy", kind, ref, "--store", s3_models)
        assert r.returncode == 3, (ref, r.stderr)
        assert r.stderr.startswith("Error: ") and len(r.stderr.strip().splitlines()) == 1
    bucket, prefix = bucket_of(s3_models)
    assert boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix + "deployments/").get("KeyCount") == 0


def test_dockerfile_matches_the_generated_deployment():
    """The image the fleet runs: slim Python 3.11, the s3 extra, `maasctl` as entrypoint, the non-root user and
    the paths the Deployment mounts (an image change that breaks the manifests fails here)."""
    from maasctl.deploy.manifests import SERVE_PORT, FleetSpec, S3Settings, fleet_objects

    root = Path(__file__).resolve().parent.parent
    lines = [ln.strip() for ln in (root / "Dockerfile").read_text().splitlines() if ln.strip()
             and not ln.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    text = "\n".join(lines)
    assert "pip install '.[s3]'" in text
    assert 'ENTRYPOINT ["maasctl"]' in text and f"EXPOSE {SERVE_PORT}" in text
    user = next(ln.split()[1] for ln in lines if ln.startswith("USER "))
    pod = fleet_objects("iris", "iris", FleetSpec("iris", "s3://b/p"), S3Settings(None, "us-east-1"))[0]
    pod_spec = pod["spec"]["template"]["spec"]
    assert user == f"{pod_spec['securityContext']['runAsUser']}:{pod_spec['securityContext']['runAsGroup']}"
    (c,) = pod_spec["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    for var in ("MAASCTL_CACHE", "MAASCTL_LOCAL_HOME", "HOME"):
        assert f"{var}={env[var]}" in text, var
    mounts = [m["mountPath"] for m in c["volumeMounts"]]
    assert env["MAASCTL_CACHE"] in mounts and env["HOME"] in mounts  # writable under a read-only root
    ignored = (root / ".dockerignore").read_text().split()
    assert ".git" in ignored and "tests" in ignored


def test_deploy_gc_keeps_the_last_deployed_and_the_aliased_and_removes_the_rest(s3_models, saved_models, tmp_path):
    from maasctl.store import open_store

    store = open_store(s3_models)
    store.register(saved_models["multi"], "iris")  # iris@3: the latest
    uris = {}
    for v in (1, 2, 3, 2):  # the last deploy rolls back to 2, by number (no alias names it)
        r = cli("deploy", "kserve", f"iris@{v}", "--store", s3_models, "--json")
        assert r.returncode == 0, r.stderr
        uris[v] = json.loads(r.stdout)["storage_uri"]
    store.set_alias("iris@3", "prod")

    r = cli("deploy", "gc", "iris", "--keep", "1", "--dry-run", "--json", "--store", s3_models)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc == {"name": "iris", "kept": [uris[2], uris[3]], "removed": [uris[1]], "dry_run": True}
    assert not _gone(uris[1])  # a dry run removes nothing

    r = cli("deploy", "gc", "iris", "--keep", "1", "--store", s3_models)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [uris[1]]
    assert _gone(uris[1]) and _gone(uris[1].rstrip("/").replace("/deployments/iris/", "/deployments/iris/_pins/"))
    _check_only_version(s3_models, _kserve_download(uris[2], tmp_path / "dl2"), 2)  # the one in use stays whole
    assert not _gone(uris[3])
    again = json.loads(cli("deploy", "gc", "iris", "--keep", "1", "--json", "--store", s3_models).stdout)
    assert again["removed"] == []


def _gone(uri: str) -> bool:
    import boto3

    bucket, _, prefix = uri[len("s3://"):].partition("/")
    return boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0) == 0


@pytest.mark.parametrize("args, code, expect", [
    (["iris", "--keep", "0"], 2, "--keep must be at least 1"),
    (["nosuch"], 3, "not found"),
])
def test_deploy_gc_refusals(args, code, expect, s3_models):
    r = cli("deploy", "gc", *args, "--store", s3_models)
    assert r.returncode == code, r.stderr
    assert r.stderr.startswith("Error: ") and expect in r.stderr and len(r.stderr.strip().splitlines()) == 1
