"""Trim the Training Operator's TFJob CRD to the schema of the fields `maasctl deploy tfjob` emits.

Usage: python3 scripts/trim_tfjob_crd.py CRD.yaml COMMIT > tests/data/tfjob_crd_schema.json

CRD.yaml is manifests/base/crds/kubeflow.org_tfjobs.yaml of github.com/kubeflow/training-operator at COMMIT
(the v1 operator; the file is gone from later commits). The full schema is 575 kB, almost all of it the
PodTemplateSpec; the trimmed copy keeps, along every path our manifest uses, the node's type, required keys,
enums, formats and patterns, so a wrong type, a missing required key or a field the API server would prune
still fails the test.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

KEEP = ("type", "required", "enum", "format", "pattern", "x-kubernetes-int-or-string", "anyOf", "minimum",
        "maximum", "x-kubernetes-preserve-unknown-fields", "description")


def prune(schema: dict[str, Any], examples: list[Any]) -> dict[str, Any]:
    out = {k: v for k, v in schema.items() if k in KEEP}
    if "description" in out:
        out["description"] = out["description"].split("\n")[0][:200]
    dicts = [e for e in examples if isinstance(e, dict)]
    if "properties" in schema:
        keys = {k for d in dicts for k in d} | set(schema.get("required", []))
        out["properties"] = {k: prune(schema["properties"][k], [d[k] for d in dicts if k in d])
                             for k in sorted(keys) if k in schema["properties"]}
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = prune(schema["additionalProperties"], [v for d in dicts for v in d.values()])
    if "items" in schema:
        out["items"] = prune(schema["items"], [i for e in examples if isinstance(e, list) for i in e])
    return out


def main() -> None:
    sys.path.insert(0, ".")
    from maasctl.deploy.manifests import S3Settings, TFJobSpec, tfjob_objects

    with open(sys.argv[1]) as f:
        crd = yaml.safe_load(f)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = version["schema"]["openAPIV3Schema"]
    spec = TFJobSpec(config_name="c.toml", config_text='path = "s3://b/d.csv"', workers=3, store="s3://b/p")
    job = tfjob_objects("x", spec, S3Settings("http://127.0.0.1:9000", "us-east-1"))[1]
    doc = {"source": {"repository": "https://github.com/kubeflow/training-operator", "commit": sys.argv[2],
                      "path": "manifests/base/crds/kubeflow.org_tfjobs.yaml", "version": "v1",
                      "trimmed_by": "scripts/trim_tfjob_crd.py"},
           "schema": prune(schema, [job])}
    json.dump(doc, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
