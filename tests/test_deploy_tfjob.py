"""`maasctl deploy tfjob`: a Kubeflow TFJob checked offline against the Training Operator's CRD schema.

tests/data/tfjob_crd_schema.json is the v1 TFJob CRD's openAPIV3Schema trimmed to the paths the manifest uses
(scripts/trim_tfjob_crd.py; the source commit is recorded in the file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import cli

SCHEMA_DOC = json.loads((Path(__file__).parent / "data" / "tfjob_crd_schema.json").read_text())
SCHEMA = SCHEMA_DOC["schema"]
RESTART_POLICIES = {"Always", "OnFailure", "Never", "ExitCode"}  # the operator's RestartPolicy values

CONFIG = """[data]
path = "s3://data/train.csv"
label = "y"
[model]
task = "classification"
[[model.layers]]
type = "Dense"
units = 2
activation = "softmax"
[train]
epochs = 2
"""


def pruned_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would drop (structural schema pruning): not in `properties`, no open map."""
    out: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and not isinstance(extra, dict):
            return []  # the root `metadata` (ObjectMeta: the API server checks it itself)
        for key, value in obj.items():
            if props is not None and key in props:
                out += pruned_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                out += pruned_fields(value, extra, f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                out.append(f"{path}.{key}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            out += pruned_fields(item, schema["items"], f"{path}[{i}]")
    return out


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "train.toml"
    path.write_text(CONFIG)
    return path


def tfjob(config: Path, *args: str) -> list[dict]:
    r = cli("deploy", "tfjob", str(config), "--image", "registry.example/maasctl:1", *args)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # JSON is YAML: `kubectl apply -f -` reads it as is
    assert doc["kind"] == "List"
    return doc["items"]


def test_tfjob_matches_the_crd_schema(config):
    cm, job = tfjob(config, "--workers", "3", "--store", "s3://models/reg", "--name", "iris-train")
    assert SCHEMA_DOC["source"]["commit"] == "374e88af2d28d49e1c40008238f6e039b5677177"
    jsonschema.Draft7Validator(SCHEMA).validate(job)
    assert pruned_fields(job, SCHEMA) == []
    assert (job["apiVersion"], job["kind"], job["metadata"]["name"]) == ("kubeflow.org/v1", "TFJob", "iris-train")
    specs = job["spec"]["tfReplicaSpecs"]
    assert sorted(specs) == ["Chief", "Worker"]
    assert (specs["Chief"]["replicas"], specs["Worker"]["replicas"]) == (1, 2)
    for spec in specs.values():
        assert spec["restartPolicy"] in RESTART_POLICIES
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "tensorflow" and container["image"] == "registry.example/maasctl:1"
        assert container["command"] == ["maasctl", "train", "/etc/maasctl/train.toml", "--cluster-timeout", "300",
                                        "--store", "s3://models/reg"]
        env = {e["name"]: e for e in container["env"]}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # credentials only by reference
            assert env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": "iris-train-s3", "key": key}}}
        (volume,) = spec["template"]["spec"]["volumes"]
        assert volume["configMap"]["name"] == cm["metadata"]["name"] == "iris-train-config"
        assert container["volumeMounts"][0]["mountPath"] == "/etc/maasctl"
    assert cm["kind"] == "ConfigMap" and cm["data"] == {"train.toml": CONFIG}


def test_schema_check_can_fail(config):
    _, job = tfjob(config, "--workers", "2")
    job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(job)
    job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["comand"] = ["typo"]
    assert pruned_fields(job, SCHEMA) == [".spec.tfReplicaSpecs.Worker.template.spec.containers[0].comand"]


def test_one_worker_is_a_chief_only_and_no_store_warns(config):
    r = cli("deploy", "tfjob", str(config), "--workers", "1")
    assert r.returncode == 0
    job = json.loads(r.stdout)["items"][1]
    assert list(job["spec"]["tfReplicaSpecs"]) == ["Chief"]
    assert "warning: no --store" in r.stderr


def test_tfjob_rejects_a_single_process_config(config, tmp_path):
    config.write_text(CONFIG + 'distribute = "none"\n')
    r = cli("deploy", "tfjob", str(config), "--workers", "2")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (f"Error: {config}: train.distribute: a TFJob needs \"auto\" or \"multi_worker\", "
                                "got \"none\"")
