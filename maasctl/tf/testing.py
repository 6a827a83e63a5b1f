"""Tiny real SavedModels for the tests (tests/conftest.py) and the benchmarks (bench/): one builder for both.

Not used by any command; it lives in the package so that bench scripts import it like any other module
instead of reaching into tests/ through sys.path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maasctl.tensors import DEFAULT_SIGNATURE


def build_mlp(tf: Any, path: Path, sizes: list[int], seed: int) -> Path:
    """An MLP exported with Keras: input `features` float32[-1, sizes[0]], softmax output.

    `tf` is the module from `maasctl.tf.load_tensorflow()` (it must be imported, quietly, before Keras)."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape=(sizes[0],), name="features")
    x = inp
    for units in sizes[1:-1]:
        x = keras.layers.Dense(units, activation="relu")(x)
    out = keras.layers.Dense(sizes[-1], activation="softmax")(x)
    keras.Model(inp, out).export(str(path), verbose=False)
    return path


def build_multi_io(tf: Any, path: Path) -> Path:
    """A tf.Module with two inputs (float `a` [-1,2], string `s` [-1]) and two outputs (`sum`, `len`)."""

    class MultiIO(tf.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.scale = tf.Variable([2.0, 3.0])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                      tf.TensorSpec([None], tf.string, name="s")])
        def serve(self, a: Any, s: Any) -> dict[str, Any]:
            return {"sum": tf.reduce_sum(a * self.scale, axis=1), "len": tf.strings.length(s)}

    module = MultiIO()
    tf.saved_model.save(module, str(path), signatures={DEFAULT_SIGNATURE: module.serve})
    return path
