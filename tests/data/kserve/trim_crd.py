"""Regenerate inferenceservice.v1beta1.schema.json from KServe's CRD (run by hand; PyYAML needed):

    git -C KSERVE show COMMIT:config/crd/full/serving.kserve.io_inferenceservices.yaml > crd.yaml
    python tests/data/kserve/trim_crd.py crd.yaml COMMIT > tests/data/kserve/inferenceservice.v1beta1.schema.json

Keeps the v1beta1 openAPIV3Schema's top level and `spec.predictor` with every property but the large PodSpec-
and framework-shaped ones (listed in the output's `$comment`), so the file stays small; `status` is dropped (a
manifest never carries one).
"""

from __future__ import annotations

import json
import sys

import yaml

KEEP_LARGE = {"model"}  # the predictor properties over LIMIT bytes that are kept anyway (the one we generate)
LIMIT = 3000


def trim(crd: dict, commit: str) -> dict:
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = version["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    predictor = spec["properties"]["predictor"]
    dropped = sorted(k for k, p in predictor["properties"].items()
                     if len(json.dumps(p)) >= LIMIT and k not in KEEP_LARGE)
    predictor = {**predictor, "properties": {k: p for k, p in predictor["properties"].items() if k not in dropped}}
    spec = {**spec, "properties": {"predictor": predictor}}
    return {
        "$comment": f"KServe InferenceService v1beta1 openAPIV3Schema from github.com/kserve/kserve commit {commit}, "
                    "config/crd/full/serving.kserve.io_inferenceservices.yaml; trimmed by trim_crd.py: spec keeps "
                    f"only predictor, status dropped, predictor properties dropped: {', '.join(dropped)}",
        **{k: v for k, v in schema.items() if k != "properties"},
        "properties": {**{k: v for k, v in schema["properties"].items() if k not in ("spec", "status")},
                       "spec": spec},
    }


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(json.dumps(trim(yaml.safe_load(f), sys.argv[2]), indent=1, sort_keys=True))
