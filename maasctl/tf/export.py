"""Export a trained Keras model as a SavedModel with maasctl's serving contract.

`serving_default` takes ONE float32 input named `features`, shape [None, n_features] (raw features; the
Normalization layer is inside the model) and returns `probabilities` [None, n_classes] (classification) or
`predictions` [None, k] (regression). The signature is checked by reading the written proto back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maasctl.errors import OperationFailed
from maasctl.store.savedmodel import read_signatures
from maasctl.tensors import DEFAULT_SIGNATURE
from maasctl.tf import load_tensorflow

tf = load_tensorflow()
import keras  # after load_tensorflow(): Keras imports TensorFlow, which must come in quietly

INPUT_NAME = "features"
OUTPUT_NAMES = {"classification": "probabilities", "regression": "predictions"}


def export_model(model: Any, path: Path, *, n_features: int, task: str) -> dict[str, Any]:
    """Write the SavedModel at `path` (which must not exist) and return its signatures."""
    output = OUTPUT_NAMES[task]
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(features: Any) -> dict[str, Any]:
        return {output: model(features, training=False)}

    archive.add_endpoint(name=DEFAULT_SIGNATURE, fn=serve,
                         input_signature=[tf.TensorSpec([None, n_features], tf.float32, name=INPUT_NAME)])
    archive.write_out(str(path), verbose=False)
    signatures = read_signatures(path)
    sig = signatures[DEFAULT_SIGNATURE]
    spec = sig["inputs"].get(INPUT_NAME)
    if list(sig["inputs"]) != [INPUT_NAME] or spec is None or spec["dtype"] != "float32" \
            or spec["shape"] != [-1, n_features] or list(sig["outputs"]) != [output]:
        raise OperationFailed(f"{path}: exported signature does not match the serving contract: {sig}")
    return signatures
