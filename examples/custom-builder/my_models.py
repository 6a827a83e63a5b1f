"""A custom model builder for maasctl: any Keras model, built in Python.

maasctl calls build(config, n_features, n_classes) where `config` is the effective training config
(a dict; `config["model"]["params"]` holds this example's free-form parameters), n_features the number of
input columns and n_classes the number of classes (None for regression). The returned model takes the
raw float32 features; with model.normalize = true maasctl puts a Normalization layer in front of it.
"""

from __future__ import annotations


def build(config: dict, n_features: int, n_classes: int | None):
    import keras  # imported here: maasctl validates the config before TensorFlow loads

    params = config.get("model", {}).get("params", {})
    width = int(params.get("width", 32))
    dropout = float(params.get("dropout", 0.1))

    inputs = keras.Input(shape=(n_features,), name="features")
    # Two parallel branches (something a plain [[model.layers]] stack cannot express), then merged.
    wide = keras.layers.Dense(width, activation="relu")(inputs)
    deep = keras.layers.Dense(width, activation="relu")(inputs)
    deep = keras.layers.Dense(width, activation="relu")(deep)
    x = keras.layers.Concatenate()([wide, deep])
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="wide_and_deep")
