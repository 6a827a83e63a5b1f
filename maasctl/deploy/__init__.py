"""Serving past one machine: Kubernetes and KServe manifests for a version in an S3 store (design.md §6).

`publish.pin_version` copies one version server-side into an immutable deployment prefix that holds only it
(KServe's TF Serving runtime serves the highest version number under `storageUri`); `manifests` builds the
Kubernetes objects as plain dicts and writes them. Nothing here talks to a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maasctl.deploy.manifests import (
    FleetSpec,
    Obj,
    S3Settings,
    TFJobSpec,
    fleet_objects,
    k8s_name,
    kserve_objects,
    tfjob_objects,
)
from maasctl.deploy.publish import PinnedVersion, pin_version, require_s3
from maasctl.refs import parse_ref
from maasctl.store.base import ModelStore

__all__ = ["FleetSpec", "Plan", "S3Settings", "fleet_plan", "kserve_plan", "tfjob_plan"]


@dataclass(frozen=True)
class Plan:
    """The objects to apply, and what they serve."""

    name: str
    objects: list[Obj]
    summary: dict[str, Any]


def kserve_plan(store: ModelStore, ref: str, *, name: str | None = None, s3: S3Settings | None = None) -> Plan:
    """Pin REF's version into its deployment prefix and build the InferenceService serving exactly it."""
    pinned: PinnedVersion = pin_version(store, ref)
    k_name = k8s_name(name or pinned.info.name)
    objects = kserve_objects(k_name, pinned, s3 or S3Settings.from_env())
    return Plan(k_name, objects, {**pinned.to_json(), "kubernetes_name": k_name})


def fleet_plan(store: ModelStore, ref: str, spec: FleetSpec, *, name: str | None = None,
               s3: S3Settings | None = None) -> Plan:
    """Check REF resolves in the S3 store now (the replicas follow it later) and build the fleet's objects."""
    s3store = require_s3(store, ref)
    info = s3store.resolve(parse_ref(ref))
    k_name = k8s_name(name or info.name)
    objects = fleet_objects(k_name, info.name, spec, s3 or S3Settings.from_env())
    return Plan(k_name, objects, {"name": info.name, "ref": ref, "version": info.version, "sha256": info.sha256,
                                  "store": s3store.location, "replicas": spec.replicas, "image": spec.image,
                                  "kubernetes_name": k_name})


def tfjob_plan(config: Path, *, workers: int, image: str, store: str | None, name: str | None = None,
               s3: S3Settings | None = None) -> Plan:
    """A TFJob training CONFIG on `workers` pods (the config is checked here; its data is read in the pods)."""
    from maasctl.training.config import load_config

    cfg = load_config(config)
    if cfg.train["distribute"] not in ("auto", "multi_worker"):
        raise cfg.error("train.distribute", f"a TFJob needs \"auto\" or \"multi_worker\", got "
                                            f"\"{cfg.train['distribute']}\"")
    k_name = k8s_name(name or cfg.register.get("name") or config.stem)
    spec = TFJobSpec(config_name=config.name, config_text=cfg.path.read_text(encoding="utf-8"), workers=workers,
                     image=image, store=store)
    objects = tfjob_objects(k_name, spec, s3 or S3Settings.from_env())
    return Plan(k_name, objects, {"config": str(cfg.path.resolve()), "workers": workers, "image": image,
                                  "store": store, "kubernetes_name": k_name})
