"""Kubernetes objects (plain dicts) for a KServe InferenceService and for a fleet of `maasctl serve` replicas.

Credentials are never written: the objects name a Secret (`<name>-s3`) that the user creates once with
`kubectl create secret generic` (README "Scaling out"); the Secret object emitted here carries only KServe's
`serving.kserve.io/s3-*` annotations, so `kubectl apply` adds them without touching its data.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from maasctl.errors import InvalidInput

Obj = dict[str, Any]
MANAGED = {"app.kubernetes.io/managed-by": "maasctl"}
SERVE_PORT = 8501
DEFAULT_IMAGE = "maasctl:latest"


def k8s_name(text: str, what: str = "name") -> str:
    """A DNS-1035 label (lowercase letters, digits, '-', starting with a letter, <= 63) from a model name."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if name and not name[0].isalpha():
        name = "m-" + name
    name = name[:63].rstrip("-")
    if not name:
        raise InvalidInput(f"--name: cannot make a Kubernetes {what} from '{text}' (use letters, digits and '-')")
    return name


@dataclass(frozen=True)
class S3Settings:
    """Where pods reach the bucket: KServe's Secret annotations and the env of `maasctl serve` pods."""

    endpoint: str | None  # http(s)://host[:port], None for AWS S3
    region: str
    verify_ssl: bool = True

    @classmethod
    def from_env(cls, endpoint: str | None = None, region: str | None = None, verify_ssl: bool = True
                 ) -> S3Settings:
        """Explicit values, else the AWS environment this machine uses to reach the store."""
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        if endpoint is not None:
            parsed = urlparse(endpoint)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise InvalidInput(f"--s3-endpoint {endpoint}: expected http(s)://HOST[:PORT]")
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(endpoint, region, verify_ssl)

    def kserve_annotations(self) -> dict[str, str]:
        parsed = urlparse(self.endpoint or "https://s3.amazonaws.com")
        return {
            "serving.kserve.io/s3-endpoint": parsed.netloc,
            "serving.kserve.io/s3-usehttps": "1" if parsed.scheme == "https" else "0",
            "serving.kserve.io/s3-region": self.region,
            "serving.kserve.io/s3-verifyssl": "1" if self.verify_ssl else "0",
        }

    def env(self, secret: str) -> list[Obj]:
        """Container env for boto3: keys from the Secret (referenced), endpoint and region as values."""
        out: list[Obj] = [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
        out.append({"name": "AWS_DEFAULT_REGION", "value": self.region})
        if self.endpoint:
            out.append({"name": "AWS_ENDPOINT_URL", "value": self.endpoint})
        return out


def _meta(name: str, model: str, **extra: Any) -> Obj:
    labels = {**MANAGED, "app.kubernetes.io/name": name, "maasctl.io/model": k8s_name(model)}
    return {"name": name, "labels": labels, **extra}


def s3_secret(name: str, s3: S3Settings) -> Obj:
    """The S3 Secret's annotations only; its AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY come from the user."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "labels": dict(MANAGED), "annotations": s3.kserve_annotations()}}


def kserve_objects(name: str, pinned: Any, s3: S3Settings) -> list[Obj]:
    """Secret + ServiceAccount + InferenceService for KServe's TensorFlow Serving runtime."""
    secret = f"{name}-s3"
    info = pinned.info
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": secret, "labels": dict(MANAGED)}, "secrets": [{"name": secret}]}
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": _meta(name, info.name, annotations={
            "maasctl.io/ref": info.ref, "maasctl.io/version": str(info.version), "maasctl.io/sha256": info.sha256}),
        "spec": {"predictor": {
            "serviceAccountName": secret,
            "model": {"modelFormat": {"name": "tensorflow"}, "storageUri": pinned.storage_uri},
        }},
    }
    return [s3_secret(secret, s3), account, isvc]


@dataclass(frozen=True)
class FleetSpec:
    """What `deploy k8s` varies: a fleet of `maasctl serve REF` replicas following REF in the store."""

    ref: str
    store: str
    replicas: int = 2
    max_replicas: int = 10
    image: str = DEFAULT_IMAGE
    cpu: str = "500m"
    memory: str = "1Gi"


def fleet_objects(name: str, model: str, spec: FleetSpec, s3: S3Settings) -> list[Obj]:
    """Deployment + Service + HorizontalPodAutoscaler + PodDisruptionBudget for `maasctl serve`."""
    if spec.replicas < 1:
        raise InvalidInput(f"--replicas must be at least 1 (got {spec.replicas})")
    secret, token_secret = f"{name}-s3", f"{name}-token"
    selector = {"app.kubernetes.io/name": name}
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    env = [*s3.env(secret),
           {"name": "MAASCTL_TOKEN", "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "token"}}},
           {"name": "MAASCTL_CACHE", "value": "/var/cache/maasctl"},
           {"name": "MAASCTL_LOCAL_HOME", "value": "/var/cache/maasctl/home"},
           {"name": "HOME", "value": "/tmp"}]
    container = {
        "name": "serve", "image": spec.image,
        "args": ["serve", spec.ref, "--host", "0.0.0.0", "--port", str(SERVE_PORT), "--store", spec.store],
        "ports": [{"name": "http", "containerPort": SERVE_PORT}],
        "env": env,
        "readinessProbe": probe,
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10,
                          "failureThreshold": 3},
        "startupProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2,
                         "failureThreshold": 90},
        "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory}, "limits": {"memory": spec.memory}},
        "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/maasctl"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, model),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {**MANAGED, **selector}, "annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/port": str(SERVE_PORT),
                    "prometheus.io/path": "/monitoring/prometheus/metrics"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                        "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                    "automountServiceAccountToken": False,
                    "containers": [container],
                    "volumes": [{"name": "cache", "emptyDir": {"sizeLimit": "20Gi"}},
                                {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}],
                },
            },
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, model),
               "spec": {"selector": selector, "ports": [{"name": "http", "port": SERVE_PORT, "targetPort": "http"}]}}
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": _meta(name, model),
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": spec.replicas, "maxReplicas": max(spec.max_replicas, spec.replicas),
                    "metrics": [{"type": "Resource", "resource": {
                        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(name, model),
           "spec": {"selector": {"matchLabels": selector},
                    "maxUnavailable": 1}}
    return [deployment, service, hpa, pdb]


def as_list(objects: list[Obj]) -> Obj:
    """One `kind: List` document (what `kubectl apply -f -` reads from stdout)."""
    return {"apiVersion": "v1", "kind": "List", "items": objects}


def write_objects(objects: list[Obj], out_dir: Path) -> list[Path]:
    """One JSON file per object (`kubectl apply -f DIR` reads .json), numbered in apply order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, obj in enumerate(objects, 1):
        path = out_dir / f"{i:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        tmp.replace(path)
        paths.append(path)
    return paths


TFJOB_PORT = 2222
CONFIG_MOUNT = "/etc/maasctl"


@dataclass(frozen=True)
class TFJobSpec:
    """What `deploy tfjob` varies: N training processes (1 Chief + N-1 Workers) running `maasctl train`."""

    config_name: str  # the file name inside the ConfigMap
    config_text: str
    workers: int
    image: str = DEFAULT_IMAGE
    store: str | None = None
    cluster_timeout: float = 300.0
    cpu: str = "1"
    memory: str = "2Gi"


def tfjob_objects(name: str, spec: TFJobSpec, s3: S3Settings) -> list[Obj]:
    """ConfigMap (the config) + a kubeflow.org/v1 TFJob whose Chief and Workers run `maasctl train`.

    The Training Operator sets TF_CONFIG in each pod (jobs "chief" and "worker"); `distribute = "auto"` then
    picks multi_worker, the Chief commits the run into the store. Pods are not restarted (`Never`): maasctl does
    not checkpoint, so a lost worker fails the job with the error in the survivors' logs instead of a retry loop.
    """
    if spec.workers < 1:
        raise InvalidInput(f"--workers must be at least 1 (got {spec.workers})")
    config_map = f"{name}-config"
    command = ["maasctl", "train", f"{CONFIG_MOUNT}/{spec.config_name}", "--cluster-timeout",
               f"{spec.cluster_timeout:g}"]
    if spec.store:
        command += ["--store", spec.store]
    env: list[Obj] = [{"name": "HOME", "value": "/tmp"}]
    uses_s3 = (spec.store or "").startswith("s3://") or "s3://" in spec.config_text
    if uses_s3:
        env = [*s3.env(f"{name}-s3"), *env]
    container = {
        "name": "tensorflow",  # the Training Operator finds the TF container by this name
        "image": spec.image,
        "command": command,
        "env": env,
        "ports": [{"name": "tfjob-port", "containerPort": TFJOB_PORT}],
        "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory}, "limits": {"memory": spec.memory}},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}],
    }

    def replica(count: int) -> Obj:
        return {"replicas": count, "restartPolicy": "Never", "template": {
            "metadata": {"labels": {**MANAGED, "app.kubernetes.io/name": name}},
            "spec": {"containers": [container],
                     "volumes": [{"name": "config", "configMap": {"name": config_map}}]}}}

    replicas = {"Chief": replica(1)}
    if spec.workers > 1:
        replicas["Worker"] = replica(spec.workers - 1)
    labels = {**MANAGED, "app.kubernetes.io/name": name}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": config_map, "labels": labels},
          "data": {spec.config_name: spec.config_text}}
    job = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": name, "labels": labels},
           "spec": {"runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 0},
                    "tfReplicaSpecs": replicas}}
    return [cm, job]
