"""The proto reader must agree with TensorFlow's own view of a SavedModel's signatures."""

import json

import pytest
from conftest import SAVEDMODELS, tf_view

from maasctl.errors import InvalidInput, NotFound
from maasctl.store.savedmodel import read_signatures
from maasctl.tensors import format_spec, tf_serving_metadata


def _assert_reader_agrees(path, theirs):
    ours = read_signatures(path)
    assert set(ours) == set(theirs)
    for name, sig in theirs.items():
        for side in ("inputs", "outputs"):
            assert {k: [v["dtype"], v["shape"]] for k, v in ours[name][side].items()} == sig[side]
        assert ours[name]["method_name"] == "tensorflow/serving/predict"


@pytest.mark.parametrize("which", ["small", "small_b", "multi"])
def test_committed_models_match_what_tensorflow_reported(saved_models, which):
    """The fast tier: TensorFlow's view was recorded by tests/data/make_savedmodels.py when it built them."""
    recorded = json.loads((SAVEDMODELS / "SIGNATURES.json").read_text())
    _assert_reader_agrees(saved_models[which], recorded[which])


@pytest.mark.parametrize("which", ["small", "multi"])
def test_signatures_match_tensorflow(tf, models, saved_models, which):
    """Models exported by the installed TensorFlow, and the committed ones, read as TensorFlow loads them."""
    _assert_reader_agrees(models[which], tf_view(tf, models[which]))
    _assert_reader_agrees(saved_models[which], tf_view(tf, saved_models[which]))


def test_metadata_in_tf_serving_shape(saved_models):
    meta = tf_serving_metadata(read_signatures(saved_models["small"])["serving_default"])
    spec = meta["inputs"]["features"]
    assert spec["dtype"] == "DT_FLOAT"
    assert spec["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}, {"size": "4", "name": ""}],
                                    "unknown_rank": False}
    assert spec["name"] == "serving_default_features:0"
    assert meta["method_name"] == "tensorflow/serving/predict"
    multi = read_signatures(saved_models["multi"])["serving_default"]
    assert format_spec(multi["inputs"]["s"]) == "string[-1]"


def test_rejects_non_savedmodels(tmp_path):
    with pytest.raises(NotFound, match="no such file"):
        read_signatures(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no saved_model.pb"):
        read_signatures(tmp_path / "empty")
    bad = tmp_path / "garbage"
    bad.mkdir()
    (bad / "saved_model.pb").write_bytes(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
    with pytest.raises(InvalidInput, match="not a readable SavedModel proto"):
        read_signatures(bad)


def test_rejects_truncated_proto_and_missing_variables(tmp_path, saved_models):
    import shutil

    broken = tmp_path / "trunc"
    shutil.copytree(saved_models["small"], broken)
    data = (broken / "saved_model.pb").read_bytes()
    (broken / "saved_model.pb").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput, match="saved_model.pb"):
        read_signatures(broken)
    novars = tmp_path / "novars"
    shutil.copytree(saved_models["small"], novars)
    (novars / "variables" / "variables.index").unlink()
    with pytest.raises(InvalidInput, match="variables.index is missing"):
        read_signatures(novars)
