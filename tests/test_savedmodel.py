"""The proto reader must agree with TensorFlow's own view of a SavedModel's signatures."""

import pytest

from maasctl.errors import InvalidInput, NotFound
from maasctl.store.savedmodel import read_signatures
from maasctl.tensors import format_spec, tf_serving_metadata


def _tf_view(tf, path):
    loaded = tf.saved_model.load(str(path))
    out = {}
    for name, fn in loaded.signatures.items():
        inputs = fn.structured_input_signature[1]
        out[name] = {
            "inputs": {k: (v.dtype.name, [-1 if d is None else d for d in v.shape.as_list()]) for k, v in inputs.items()},
            "outputs": {k: (v.dtype.name, [-1 if d is None else d for d in v.shape.as_list()])
                        for k, v in fn.structured_outputs.items()},
        }
    return out


@pytest.mark.parametrize("which", ["small", "multi"])
def test_signatures_match_tensorflow(tf, models, which):
    ours = read_signatures(models[which])
    theirs = _tf_view(tf, models[which])
    assert set(ours) == set(theirs)
    for name, sig in theirs.items():
        for side in ("inputs", "outputs"):
            assert {k: (v["dtype"], v["shape"]) for k, v in ours[name][side].items()} == sig[side]
        assert ours[name]["method_name"] == "tensorflow/serving/predict"


def test_metadata_in_tf_serving_shape(models):
    meta = tf_serving_metadata(read_signatures(models["small"])["serving_default"])
    spec = meta["inputs"]["features"]
    assert spec["dtype"] == "DT_FLOAT"
    assert spec["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}, {"size": "4", "name": ""}],
                                    "unknown_rank": False}
    assert spec["name"] == "serving_default_features:0"
    assert meta["method_name"] == "tensorflow/serving/predict"
    multi = read_signatures(models["multi"])["serving_default"]
    assert format_spec(multi["inputs"]["s"]) == "string[-1]"


def test_rejects_non_savedmodels(tmp_path, models):
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


def test_rejects_truncated_proto_and_missing_variables(tmp_path, models):
    import shutil

    broken = tmp_path / "trunc"
    shutil.copytree(models["small"], broken)
    data = (broken / "saved_model.pb").read_bytes()
    (broken / "saved_model.pb").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput, match="saved_model.pb"):
        read_signatures(broken)
    novars = tmp_path / "novars"
    shutil.copytree(models["small"], novars)
    (novars / "variables" / "variables.index").unlink()
    with pytest.raises(InvalidInput, match="variables.index is missing"):
        read_signatures(novars)
