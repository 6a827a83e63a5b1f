"""A TF Serving :predict (or :classify/:regress) request body -> input arrays, validated against the model's
signatures; classify/regress results -> the response body.

The JSON itself and the conversion of each input's value are `maasctl.tensors`' (shared with the predict
client); this module knows the request's layouts: row format (`instances`) and columnar (`inputs`), a single
input's value given bare or keyed by its name. Every error is an InvalidInput saying what the signature
expects, what arrived and where (`instances[2]`, `inputs['a']`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from maasctl.errors import InvalidInput, Unimplemented
from maasctl.tensors import DEFAULT_SIGNATURE, describe, dumps, to_array


@dataclass
class PredictRequest:
    """A validated predict request: NumPy inputs keyed by signature input name."""

    signature_name: str
    inputs: dict[str, np.ndarray]
    row_format: bool
    rows: int | None  # common leading dimension when every input has one (batchable), else None


def nested_ok(decode: Any, *args: Any) -> Any:
    """Run a request decoder; a body nested deeper than Python's recursion allows is the client's error (400),
    not a 500 with a traceback in the log."""
    try:
        return decode(*args)
    except RecursionError:
        raise InvalidInput("the request body nests lists or objects too deeply (a tensor has at most a few "
                           "dozen dimensions)") from None


def parse_predict(doc: Any, signatures: dict[str, dict[str, Any]]) -> PredictRequest:
    """Validate a decoded :predict body against the model's signatures and build its input arrays."""
    if not isinstance(doc, dict):
        raise InvalidInput(f"the request body must be a JSON object with 'instances' or 'inputs'; got {describe(doc)}")
    sig_name = doc.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(sig_name, str):
        raise InvalidInput(f"'signature_name' must be a string; got {describe(sig_name)}")
    sig_name = sig_name or DEFAULT_SIGNATURE
    sig = signature(signatures, sig_name)
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise InvalidInput("Not allowed to have both 'inputs' and 'instances' keys in a request (use one)")
    if not has_instances and not has_inputs:
        raise InvalidInput("Missing 'inputs' or 'instances' key (row format: {\"instances\": [...]}, "
                           "columnar: {\"inputs\": ...})")
    specs = sig["inputs"]
    if not specs:
        raise InvalidInput(f"signature '{sig_name}' takes no inputs")
    if has_instances:
        inputs = _parse_instances(doc["instances"], specs)
    else:
        inputs = _parse_columnar(doc["inputs"], specs)
    return PredictRequest(sig_name, inputs, has_instances, batch_rows(inputs, specs))


def signature(signatures: dict[str, dict[str, Any]], name: str, quote: str = "'") -> dict[str, Any]:
    """The signature called `name`; InvalidInput in TF Serving's words (its gRPC API quotes with `"`)."""
    sig = signatures.get(name)
    if sig is None:
        raise InvalidInput(f"Serving signature name: {quote}{name}{quote} not found in signature def "
                           f"(available: {', '.join(sorted(signatures)) or 'none'})")
    return sig


def batch_rows(inputs: dict[str, np.ndarray], specs: dict[str, dict[str, Any]]) -> int | None:
    """The rows the batcher may merge: the common leading size when every input has a free leading (batch)
    dimension and all agree on its size, else None (the request is run on its own)."""
    free = all(specs[n]["shape"] and specs[n]["shape"][0] == -1 for n in inputs)
    leading = {a.shape[0] if a.ndim else None for a in inputs.values()}
    return leading.pop() if free and len(leading) == 1 else None


def _parse_instances(instances: Any, specs: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise InvalidInput(f"'instances' must be a list of examples; got {describe(instances)}")
    if not instances:
        raise InvalidInput("'instances' is empty: send at least one example")
    names = list(specs)
    if len(names) == 1:
        name = names[0]
        first = instances[0]
        if isinstance(first, dict) and set(first) == {name} and not _is_b64(first, specs[name]):
            values = []
            for i, inst in enumerate(instances):
                if not isinstance(inst, dict) or set(inst) != {name}:
                    raise InvalidInput(f"instances[{i}] must be an object with key '{name}' like instances[0]")
                values.append(inst[name])
        else:
            values = instances
        return {name: to_array(values, name, specs[name], "instances", row_format=True)}
    columns: dict[str, list] = {n: [] for n in names}
    expected = set(names)
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise InvalidInput(f"the signature has {len(names)} inputs ({', '.join(names)}), so each instance "
                               f"must be an object with those keys; got {describe(inst)} at instances[{i}]")
        keys = set(inst)
        if keys != expected:
            missing, extra = sorted(expected - keys), sorted(keys - expected)
            what = "; ".join(x for x in (f"missing {', '.join(repr(m) for m in missing)}" if missing else "",
                                         f"unknown {', '.join(repr(e) for e in extra)}" if extra else "") if x)
            raise InvalidInput(f"instances[{i}] must have exactly the keys {', '.join(names)}: {what}")
        for n in names:
            columns[n].append(inst[n])
    return {n: to_array(columns[n], n, specs[n], f"instances[*]['{n}']", row_format=True) for n in names}


def _is_b64(value: dict, spec: dict[str, Any]) -> bool:
    return spec["dtype"] == "string" and set(value) == {"b64"}


def _parse_columnar(inputs: Any, specs: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    names = list(specs)
    if len(names) == 1:
        name = names[0]
        if isinstance(inputs, dict) and set(inputs) == {name} and not _is_b64(inputs, specs[name]):
            inputs = inputs[name]
        return {name: to_array(inputs, name, specs[name], "inputs", row_format=False)}
    if not isinstance(inputs, dict):
        raise InvalidInput(f"the signature has {len(names)} inputs ({', '.join(names)}), so 'inputs' must be an "
                           f"object with those keys; got {describe(inputs)}")
    keys, expected = set(inputs), set(names)
    if keys != expected:
        missing, extra = sorted(expected - keys), sorted(keys - expected)
        parts = [f"missing {', '.join(repr(m) for m in missing)}" if missing else "",
                 f"unknown {', '.join(repr(e) for e in extra)}" if extra else ""]
        raise InvalidInput(f"'inputs' must have exactly the keys {', '.join(names)}: "
                           + "; ".join(p for p in parts if p))
    return {n: to_array(inputs[n], n, specs[n], f"inputs['{n}']", row_format=False) for n in names}


# -- classify / regress: TF Serving's tf.Example-style requests and their results -----------------------------
def examples_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The part of a version's metadata that examples and results need (small: it travels to the helper)."""
    return {k: meta.get(k) for k in ("feature_names", "class_names")}


def parse_examples(doc: Any, signatures: dict[str, dict[str, Any]], meta: dict[str, Any]
                   ) -> tuple[str, dict[str, np.ndarray], int]:
    """TF Serving's tf.Example-style `examples` (+ `context`) -> inputs of the model's signature.

    Each example maps feature names to values; with a single input of shape [-1, n] the features are taken
    in the recorded `feature_names` order (or an example may give the input by name)."""
    if not isinstance(doc, dict):
        raise InvalidInput("the request body must be a JSON object with 'examples'")
    examples = doc.get("examples")
    if not isinstance(examples, list) or not examples:
        raise InvalidInput("'examples' must be a non-empty list of objects (feature name -> value)")
    context = doc.get("context") or {}
    if not isinstance(context, dict):
        raise InvalidInput("'context' must be an object (feature name -> value)")
    sig_name = doc.get("signature_name") or DEFAULT_SIGNATURE
    specs = signature(signatures, str(sig_name))["inputs"]
    merged = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict):
            raise InvalidInput(f"examples[{i}] must be an object (feature name -> value)")
        merged.append({**context, **ex})
    feature_names = list(meta.get("feature_names") or [])
    if len(specs) == 1:
        (name, spec), = specs.items()
        if all(name in ex for ex in merged):
            rows = [ex[name] for ex in merged]
        elif feature_names:
            rows = []
            for i, ex in enumerate(merged):
                missing = [f for f in feature_names if f not in ex]
                if missing:
                    raise InvalidInput(f"examples[{i}] lacks feature(s) {', '.join(missing)} "
                                       f"(the model takes: {', '.join(feature_names)})")
                rows.append([ex[f] for f in feature_names])
        else:
            raise InvalidInput(f"examples must give input '{name}' (no feature names were recorded for this model)")
        return sig_name, {name: to_array(rows, name, spec, "examples", row_format=True)}, len(rows)
    inputs = {}
    for name, spec in specs.items():
        for i, ex in enumerate(merged):
            if name not in ex:
                raise InvalidInput(f"examples[{i}] lacks feature '{name}' (the model takes: {', '.join(specs)})")
        inputs[name] = to_array([ex[name] for ex in merged], name, spec, f"examples[*]['{name}']",
                                      row_format=True)
    return sig_name, inputs, len(merged)


def scores(verb: str, sig_name: str, outputs: dict[str, np.ndarray], meta: dict[str, Any]
           ) -> tuple[list[str] | None, np.ndarray]:
    """(class names, scores [n, classes]) for classify; (None, values [n, targets]) for regress."""
    if len(outputs) != 1:
        raise Unimplemented(f"{verb}: signature '{sig_name}' has {len(outputs)} outputs; expected one")
    out = np.asarray(next(iter(outputs.values())))
    values = out.reshape(out.shape[0], -1).astype(np.float64)
    if verb == "regress":
        return None, values
    names = list(meta.get("class_names") or [])
    if values.shape[1] == 1:  # a single sigmoid unit: P(positive)
        values = np.concatenate([1.0 - values, values], axis=1)
    if len(names) != values.shape[1]:
        names = [str(i) for i in range(values.shape[1])]
    return names, values


def results_body(names: list[str] | None, values: np.ndarray) -> bytes:
    """`{"results": ...}`: per example [[class, score], ...] (classify) or a value (regress; a list for a
    multi-target model); non-finite values as TF Serving's NaN/Infinity tokens (orjson would write null)."""
    if names is None:
        results: list = values[:, 0].tolist() if values.shape[1] == 1 else values.tolist()
    else:
        results = [[[names[j], float(row[j])] for j in range(len(names))] for row in values.tolist()]
    if np.isfinite(values).all():
        return dumps({"results": results})
    import json

    return json.dumps({"results": results}, allow_nan=True, separators=(",", ":")).encode()
