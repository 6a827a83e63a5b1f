"""The training config: parsing, --set overrides, validation messages, defaults. Pure Python, fast."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from maasctl.errors import InvalidInput, NotFound
from maasctl.training.config import KERAS_LAYERS, apply_override, check_against_data, load_config, parse_override

GOOD = """
[data]
path = "train.csv"
label = "species"

[model]
task = "classification"
[[model.layers]]
type = "Dense"
units = 8
activation = "relu"
[[model.layers]]
type = "Dense"
units = 3
activation = "softmax"

[train]
epochs = 3
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    (tmp_path / "train.csv").write_text("a,b,species\n1,2,x\n3,4,y\n5,6,z\n")
    return path


def error_of(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> str:
    path = write(tmp_path, text)
    with pytest.raises(InvalidInput) as exc:
        load_config(path, overrides)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_defaults_filled(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.model["normalize"] is True
    assert cfg.train["loss"] == "sparse_categorical_crossentropy"
    assert cfg.train["metrics"] == ["accuracy"]
    assert cfg.train["seed"] == 42 and cfg.train["epochs"] == 3 and cfg.train["batch_size"] == 32
    assert cfg.data["validation_split"] == 0.2 and cfg.data["shuffle"] is True
    assert cfg.resolve(cfg.data["path"]) == tmp_path.resolve() / "train.csv"
    assert len(cfg.text_sha256) == 64


def test_regression_defaults(tmp_path):
    cfg = load_config(write(tmp_path, GOOD.replace('"classification"', '"regression"')))
    assert cfg.train["loss"] == "mean_squared_error"
    assert cfg.train["metrics"] == ["mean_absolute_error"]


def test_top_level_key_that_belongs_in_a_section(tmp_path):
    msg = error_of(tmp_path, "epochs = 3\n" + GOOD.replace("epochs = 3", ""))
    assert "epochs" in msg and "train.epochs" in msg


# (what to replace in GOOD, with what) -> the pieces the one-line message must contain
MISTAKES = [
    pytest.param("[train]", "[trian]", ["config.toml: trian: unknown top-level key", "did you mean 'train'"],
                 id="unknown-top-level-key"),
    pytest.param("epochs = 3", "epoch = 3", ["config.toml: train.epoch: unknown key in [train] (did you mean 'epochs'?)"],
                 id="unknown-section-key"),
    pytest.param("epochs = 3", 'epochs = "ten"',
                 ['config.toml: train.epochs: expected an integer >= 1, got the string "ten"'], id="wrong-type"),
    pytest.param('label = "species"', 'label = "species"\nvalidation_split = 1.5',
                 ["data.validation_split: expected a number >= 0.0 and < 1.0, got the float 1.5"],
                 id="validation-split-range"),
    pytest.param('"classification"', '"clasification"', ["model.task", "did you mean 'classification'"],
                 id="bad-task"),
    pytest.param('path = "train.csv"', "", ["config.toml: data.path: required key is missing"], id="missing-path"),
    pytest.param('label = "species"', "", ["data.label: required key is missing"], id="missing-label"),
    pytest.param("train.csv", "train.txt", ["data.path: expected a .csv, .jsonl or .npz file"],
                 id="unsupported-suffix"),
]


@pytest.mark.parametrize(("old", "new", "needles"), MISTAKES)
def test_a_mistake_is_one_line_naming_the_key(tmp_path, old: str, new: str, needles: list[str]):
    msg = error_of(tmp_path, GOOD.replace(old, new))
    for needle in needles:
        assert needle in msg


def test_invalid_toml_names_file_and_line(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("epochs = 3", "epochs = = 3"))
    assert "config.toml: invalid TOML" in msg and "line" in msg


def test_missing_config_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="nope.toml: config file not found"):
        load_config(tmp_path / "nope.toml")


def test_unknown_layer_type_says_where_to_look(tmp_path):
    msg = error_of(tmp_path, GOOD.replace('type = "Dense"\nunits = 8', 'type = "Dens"\nunits = 8'))
    assert "model.layers[0].type: unknown layer type 'Dens' (did you mean 'Dense'?)" in msg
    assert "keras.io/api/layers" in msg


def test_layer_without_type(tmp_path):
    msg = error_of(tmp_path, GOOD.replace('type = "Dense"\nunits = 3', 'units = 3'))
    assert "model.layers[1].type: required key is missing" in msg


def test_input_layer_is_implicit(tmp_path):
    msg = error_of(tmp_path, GOOD.replace('type = "Dense"\nunits = 8', 'type = "InputLayer"\nunits = 8'))
    assert "model.layers[0].type" in msg and "implicit" in msg


def test_layers_and_builder_exclusive(tmp_path):
    msg = error_of(tmp_path, GOOD.replace('task = "classification"', 'task = "classification"\nbuilder = "m:f"'))
    assert "model.layers" in msg and "not both" in msg
    msg = error_of(tmp_path, GOOD.split("[[model.layers]]")[0] + "[train]\n")
    assert "exactly one of" in msg


def test_builder_syntax(tmp_path):
    text = GOOD.split("[[model.layers]]")[0].replace('task = "classification"',
                                                      'task = "classification"\nbuilder = "no colon"')
    msg = error_of(tmp_path, text)
    assert 'model.builder: expected "module:function"' in msg


def test_builder_module_missing_fails_before_tensorflow(tmp_path):
    text = GOOD.split("[[model.layers]]")[0].replace('task = "classification"',
                                                      'task = "classification"\nbuilder = "my_models_nope:build"')
    msg = error_of(tmp_path, text)
    assert "model.builder: cannot import 'my_models_nope:build'" in msg and "my_models_nope.py" in msg


def test_builder_found_beside_config(tmp_path):
    text = GOOD.split("[[model.layers]]")[0].replace('task = "classification"',
                                                      'task = "classification"\nbuilder = "my_models:build"')
    (tmp_path / "my_models.py").write_text("def build(config, n_features, n_classes):\n    raise SystemExit\n")
    cfg = load_config(write(tmp_path, text))
    assert cfg.model["builder"] == "my_models:build"


def test_builder_function_missing_found_without_running_the_module(tmp_path):
    text = GOOD.split("[[model.layers]]")[0].replace('task = "classification"',
                                                      'task = "classification"\nbuilder = "my_models:biuld"')
    marker = tmp_path / "ran"
    (tmp_path / "my_models.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                           "def build(config, n_features, n_classes):\n    pass\n")
    msg = error_of(tmp_path, text)
    assert "model.builder: cannot use 'my_models:biuld'" in msg and "defines no 'biuld'" in msg
    assert "did you mean 'build'" in msg
    assert not marker.exists()  # the module's code never ran


def test_early_stopping_defaults_and_errors(tmp_path):
    cfg = load_config(write(tmp_path, GOOD + "early_stopping = { patience = 2 }\n"))
    assert cfg.train["early_stopping"] == {"patience": 2, "monitor": "val_loss", "min_delta": 0.0,
                                           "restore_best_weights": True, "mode": "auto"}
    cfg = load_config(write(tmp_path, GOOD + "early_stopping = true\n"))
    assert cfg.train["early_stopping"]["patience"] == 5
    msg = error_of(tmp_path, GOOD + "early_stopping = { patiense = 2 }\n")
    assert "train.early_stopping.patiense: unknown key (did you mean 'patience'?)" in msg


def test_optimizer_names(tmp_path):
    cfg = load_config(write(tmp_path, GOOD + 'optimizer = "SGD"\n'))
    assert cfg.train["optimizer"] == "sgd"
    msg = error_of(tmp_path, GOOD + 'optimizer = "adm"\n')
    assert "train.optimizer" in msg and "did you mean 'adam'" in msg


def test_register_section_checked(tmp_path):
    msg = error_of(tmp_path, GOOD + '[register]\nname = "Bad Name!"\n')
    assert "register.name: expected a valid model name" in msg


def test_validation_path_and_split_exclusive(tmp_path):
    msg = error_of(tmp_path, GOOD.replace('label = "species"',
                                          'label = "species"\nvalidation_split = 0.1\nvalidation_path = "v.csv"'))
    assert "either validation_split or validation_path" in msg


def test_validation_path_is_one_file_not_a_glob(tmp_path):
    """data.path may be a glob; validation_path names one file (a glob's first match was taken silently)."""
    msg = error_of(tmp_path, GOOD.replace('label = "species"', 'label = "species"\nvalidation_path = "val/*.csv"'))
    assert 'data.validation_path: expected one file, not a glob (got "val/*.csv")' in msg


def test_label_cannot_be_feature(tmp_path):
    msg = error_of(tmp_path, GOOD.replace('label = "species"', 'label = "species"\nfeatures = ["a", "species"]'))
    assert "data.features: 'species' is the label column" in msg


# -- --set -----------------------------------------------------------------------------------------------
def test_set_parses_toml_values():
    assert parse_override("train.epochs=5") == (["train", "epochs"], 5)
    assert parse_override("train.learning_rate=1e-3") == (["train", "learning_rate"], 0.001)
    assert parse_override('data.features=["a","b"]') == (["data", "features"], ["a", "b"])
    assert parse_override("train.optimizer=sgd") == (["train", "optimizer"], "sgd")  # bare word: a string
    assert parse_override("model.layers[1].units=4") == (["model", "layers", 1, "units"], 4)


def test_set_overrides_and_validates(tmp_path):
    path = write(tmp_path, GOOD)
    cfg = load_config(path, ["train.epochs=7", "model.layers[0].units=32", "train.early_stopping.patience=1",
                             "model.normalize=false"])
    assert cfg.train["epochs"] == 7 and cfg.model["layers"][0]["units"] == 32
    assert cfg.train["early_stopping"]["patience"] == 1 and cfg.model["normalize"] is False
    assert cfg.overrides[0] == "train.epochs=7"
    with pytest.raises(InvalidInput, match=r"config.toml: train.epochs: expected an integer >= 1, got the integer 0"):
        load_config(path, ["train.epochs=0"])


def test_set_unknown_key(tmp_path):
    msg = error_of(tmp_path, GOOD, ("train.epoch=5",))
    assert msg.startswith("--set train.epoch: unknown key 'epoch' in [train] (did you mean 'epochs'?)")
    msg = error_of(tmp_path, GOOD, ("trian.epochs=5",))
    assert "unknown section 'trian'" in msg and "did you mean 'train'" in msg
    msg = error_of(tmp_path, GOOD, ("model.layers[5].units=5",))
    assert "2 [[model.layers]]" in msg
    msg = error_of(tmp_path, GOOD, ("train.epochs",))
    assert "expected KEY=VALUE" in msg


def test_set_on_missing_section_creates_it():
    doc: dict = {}
    apply_override(doc, "register.name=iris")
    assert doc == {"register": {"name": "iris"}}


# -- checks against the data -----------------------------------------------------------------------------
def test_output_units_must_match_classes(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    check_against_data(cfg, 2, 3, ["x", "y", "z"])
    with pytest.raises(InvalidInput) as exc:
        check_against_data(cfg, 2, 4, ["w", "x", "y", "z"])
    assert "config.toml: model.layers[1].units: the output layer has 3 units but the data has 4 classes " \
           "(w, x, y, z); set units = 4" in str(exc.value)


def test_classifier_output_needs_softmax(tmp_path):
    cfg = load_config(write(tmp_path, GOOD.replace('units = 3\nactivation = "softmax"', "units = 3")))
    with pytest.raises(InvalidInput, match=r"model.layers\[1\].activation: expected \"softmax\""):
        check_against_data(cfg, 2, 3, ["x", "y", "z"])


def test_val_monitor_needs_validation(tmp_path):
    text = GOOD.replace('label = "species"', 'label = "species"\nvalidation_split = 0.0')
    cfg = load_config(write(tmp_path, text + "early_stopping = true\n"))
    with pytest.raises(InvalidInput, match="train.early_stopping.monitor: 'val_loss' needs validation data"):
        check_against_data(cfg, 2, 3, ["x", "y", "z"])


def test_config_and_data_checks_never_import_tensorflow(tmp_path):
    path = write(tmp_path, GOOD)
    code = ("import sys; from maasctl.training.data import prepare; cfg, ds = prepare(sys.argv[1], ['train.epochs=2']); "
            "assert ds.class_names == ['x', 'y', 'z'], ds.class_names; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"


def test_known_layer_names_are_class_names():
    assert "Dense" in KERAS_LAYERS and "Dropout" in KERAS_LAYERS
    assert all(n[0].isupper() for n in KERAS_LAYERS)


def test_class_weight(tmp_path):
    cfg = load_config(write(tmp_path, GOOD + 'class_weight = "balanced"\n'))
    assert cfg.train["class_weight"] == "balanced"
    cfg = load_config(write(tmp_path, GOOD + "class_weight = { x = 2.0, y = 1 }\n"))
    check_against_data(cfg, 2, 3, ["x", "y", "z"])
    with pytest.raises(InvalidInput, match=r"train.class_weight.q: not a class of the data \(classes: x, y, z\)"):
        load_and_check(tmp_path, "{ q = 2.0 }")
    assert "expected \"balanced\" or a table" in error_of(tmp_path, GOOD + 'class_weight = "even"\n')
    regression = GOOD.replace('"classification"', '"regression"') + 'class_weight = "balanced"\n'
    assert "train.class_weight: only applies to classification" in error_of(tmp_path, regression)


def load_and_check(tmp_path: Path, table: str) -> None:
    cfg = load_config(write(tmp_path, GOOD + f"class_weight = {table}\n"))
    check_against_data(cfg, 2, 3, ["x", "y", "z"])
