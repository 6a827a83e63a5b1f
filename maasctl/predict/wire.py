"""The TF Serving JSON wire format on the client side: request bodies, responses, predictions documents."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from maasctl.errors import InvalidInput
from maasctl.predict.schema import ModelSchema, dtype_kind_safe, numpy_dtype
from maasctl.tensors import dumps, response_doc, to_jsonable


def request_body(schema: ModelSchema, inputs: dict[str, np.ndarray]) -> bytes:
    """A TF Serving predict body: row format for one input, columnar for several (cheaper to build)."""
    finite = all(v.dtype.kind != "f" or bool(np.isfinite(v).all()) for v in inputs.values())
    prepared = {k: (to_jsonable(v) if v.dtype == object or not finite else v) for k, v in inputs.items()}
    doc: dict[str, Any] = {"signature_name": schema.signature_name}
    if schema.single_input:
        doc["instances"] = prepared[schema.single_input]
    else:
        doc["inputs"] = prepared
    if not finite:  # orjson would write null: TF Serving's NaN/Infinity tokens, which the server reads back
        return json.dumps(doc, allow_nan=True, separators=(",", ":")).encode()
    return dumps(doc)


def response_outputs(schema: ModelSchema, doc: Any, rows: int, where: str) -> dict[str, np.ndarray]:
    """A predict response body (row or columnar) -> {output name: array with `rows` rows}."""
    names = list(schema.outputs)
    if not isinstance(doc, dict) or not ("predictions" in doc or "outputs" in doc):
        raise InvalidInput(f"{where}: the response has neither 'predictions' nor 'outputs'")
    if "predictions" in doc:
        preds = doc["predictions"]
        if len(names) == 1 and not (preds and isinstance(preds[0], dict) and set(preds[0]) == set(names)):
            cols = {names[0]: preds}
        else:
            cols = {n: [p[n] for p in preds] for n in names}
    else:
        outs = doc["outputs"]
        cols = outs if isinstance(outs, dict) and set(outs) == set(names) else {names[0]: outs}
    result = {}
    for n, values in cols.items():
        if not isinstance(values, list) or len(values) != rows:
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise InvalidInput(f"{where}: output '{n}' has {got} rows, expected {rows}")
        result[n] = _output_array(values, schema.outputs.get(n, {}).get("dtype", "float32"))
    return result


def _output_array(values: list[Any], dtype: str) -> np.ndarray:
    kind = dtype_kind_safe(dtype)
    if kind in ("float", "int", "bool"):
        return np.asarray(values, dtype=numpy_dtype(dtype))
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def predictions_doc(schema: ModelSchema, outputs: dict[str, np.ndarray], columnar: bool = False) -> dict[str, Any]:
    """TF Serving's response body for given outputs (as a server would answer)."""
    return response_doc({n: to_jsonable(a) for n, a in outputs.items()}, row_format=not columnar)
