"""Reading training data (CSV, JSONL, NPZ) without TensorFlow: arrays, labels, splits and error messages."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maasctl.errors import InvalidInput
from maasctl.training.config import load_config
from maasctl.training.data import class_mapping, load_dataset, prepare

CONFIG = """
[data]
path = "{path}"
{label}
{extra}

[model]
task = "{task}"
[[model.layers]]
type = "Dense"
units = {units}
{activation}
"""


def make(tmp_path: Path, filename: str, content: str | bytes | None = None, *, label: str = "y",
         task: str = "classification", extra: str = "validation_split = 0.0", units: int = 2) -> Path:
    """Write a data file and a config pointing at it; return the config path."""
    if content is not None:
        target = tmp_path / filename
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(textwrap.dedent(content).lstrip())
    activation = 'activation = "softmax"' if task == "classification" else ""
    label_line = f'label = "{label}"' if label else ""
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG.format(path=filename, label=label_line, extra=extra, task=task, units=units,
                                 activation=activation))
    return cfg


def load(cfg_path: Path, overrides: tuple[str, ...] = ()):
    return load_dataset(load_config(cfg_path, overrides))


def fails(cfg_path: Path) -> str:
    with pytest.raises(InvalidInput) as exc:
        load(cfg_path)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# -- CSV -------------------------------------------------------------------------------------------------
def test_csv_string_labels_sorted(tmp_path):
    cfg = make(tmp_path, "d.csv", """
        a,b,y
        1,2.5,dog
        3,4,cat
        5,6,dog
    """)
    ds = load(cfg)
    assert ds.feature_names == ["a", "b"]
    assert ds.class_names == ["cat", "dog"]
    assert ds.y_train.tolist() == [1, 0, 1]
    assert ds.x_train.dtype == np.float32 and ds.x_train.tolist() == [[1, 2.5], [3, 4], [5, 6]]
    assert ds.x_val is None
    digest = hashlib.sha256((tmp_path / "d.csv").read_bytes()).hexdigest()
    assert ds.files == [{"role": "train", "path": str(tmp_path / "d.csv"), "size": (tmp_path / "d.csv").stat().st_size,
                         "sha256": digest}]


def test_csv_integer_labels_numeric_order(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,y\n1,10\n2,2\n3,1\n4,2.0\n", units=3)
    ds = load(cfg)
    assert ds.class_names == ["1", "2", "10"]
    assert ds.y_train.tolist() == [2, 1, 0, 1]


def test_csv_label_in_the_middle_features_selected(tmp_path):
    cfg = make(tmp_path, "d.csv", 'a,y,b,c\n1,"x, quoted",2,3\n4,z,5,6\n', extra='features = ["c", "a"]\n'
               'validation_split = 0.0')
    ds = load(cfg)
    assert ds.feature_names == ["c", "a"]
    assert ds.x_train.tolist() == [[3, 1], [6, 4]]
    assert ds.class_names == ["x, quoted", "z"]


def test_csv_bom_blank_lines_and_semicolons(tmp_path):
    cfg = make(tmp_path, "d.csv", "\ufeffa;y\n1;p\n\n2;q\n".encode(), extra='delimiter = ";"\nvalidation_split = 0.0')
    ds = load(cfg)
    assert ds.feature_names == ["a"] and ds.x_train.ravel().tolist() == [1, 2]


def test_csv_regression_multi_target(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,t1,b,t2\n1,0.5,2,7\n3,1.5,4,8\n", label="", task="regression", units=2,
               extra='label = ["t1", "t2"]\nvalidation_split = 0.0')
    ds = load(cfg)
    assert ds.feature_names == ["a", "b"] and ds.class_names is None
    assert ds.y_train.tolist() == [[0.5, 7], [1.5, 8]] and ds.n_outputs == 2


def test_missing_data_file_is_not_found(tmp_path):
    from maasctl.errors import NotFound

    cfg = make(tmp_path, "absent.csv")
    with pytest.raises(NotFound) as exc:  # exit 3, like a missing config (issue 11, item 18)
        load(cfg)
    assert f"{cfg}: data.path: file not found: {tmp_path / 'absent.csv'}" == str(exc.value)


def test_label_column_absent_lists_columns(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,b,label\n1,2,x\n", label="species")
    msg = fails(cfg)
    assert "d.csv: label column 'species' not found" in msg and "columns found: a, b, label" in msg


def test_feature_column_absent(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,b,y\n1,2,x\n", extra='features = ["a", "bb"]\nvalidation_split = 0.0')
    msg = fails(cfg)
    assert "feature column 'bb' not found (did you mean 'b'?)" in msg


def test_non_numeric_cell_names_line_and_column(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,b,y\n1,2,x\n3,abc,y\n5,6,x\n")
    assert fails(cfg) == f"{tmp_path / 'd.csv'}:3: column 'b': 'abc' is not a number"


def test_nan_cell(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,b,y\n1,2,x\n3,4,y\nnan,6,x\n")
    msg = fails(cfg)
    assert "d.csv:4: column 'a': 'nan' is not allowed (NaN and infinite values must be cleaned" in msg


def test_empty_cell(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,b,y\n1,,x\n")
    assert "d.csv:2: column 'b': empty cell" in fails(cfg)


def test_empty_label_cell(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,b,y\n1,2,x\n1,2,\n")
    assert "d.csv:3: label column 'y' is empty" in fails(cfg)


def test_ragged_row(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,b,y\n1,2,x\n1,2\n")
    assert "d.csv:3: expected 3 columns as in the header, found 2" in fails(cfg)


def test_regression_label_not_numeric(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,y\n1,2\n3,big\n", task="regression", units=1)
    assert "d.csv:3: column 'y': 'big' is not a number" in fails(cfg)


def test_header_only(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,y\n")
    assert "no data rows" in fails(cfg)


# -- JSONL -----------------------------------------------------------------------------------------------
def test_jsonl_classification(tmp_path):
    lines = [{"a": 1, "b": 2.0, "y": "x"}, {"a": 3, "b": 4, "y": "w"}, {"b": 6, "a": 5, "y": "x"}]
    cfg = make(tmp_path, "d.jsonl", "\n".join(json.dumps(o) for o in lines) + "\n")
    ds = load(cfg)
    assert ds.feature_names == ["a", "b"] and ds.class_names == ["w", "x"]
    assert ds.x_train.tolist() == [[1, 2], [3, 4], [5, 6]] and ds.y_train.tolist() == [1, 0, 1]


def test_jsonl_integer_labels_and_regression(tmp_path):
    cfg = make(tmp_path, "d.jsonl", '{"a": 1, "y": 2}\n{"a": 2, "y": 0}\n')
    assert load(cfg).class_names == ["0", "2"]
    cfg = make(tmp_path, "d.jsonl", None, task="regression", units=1)
    assert load(cfg).y_train.tolist() == [[2], [0]]


def test_jsonl_errors(tmp_path):
    cfg = make(tmp_path, "d.jsonl", '{"a": 1, "y": "x"}\n{"a": "one", "y": "x"}\n')
    assert fails(cfg) == f'{tmp_path / "d.jsonl"}:2: feature \'a\': "one" is not a number'
    make(tmp_path, "d.jsonl", '{"a": 1, "y": "x"}\n{"y": "x"}\n')
    assert "d.jsonl:2: feature key 'a' is missing" in fails(cfg)
    make(tmp_path, "d.jsonl", '{"a": 1, "y": "x"}\n{"a": null, "y": "x"}\n')
    assert "d.jsonl:2: feature 'a' is null, expected a number" in fails(cfg)
    make(tmp_path, "d.jsonl", '{"a": 1, "y": "x"}\n{"a": 1, "y": "x"\n')
    assert "d.jsonl:2: invalid JSON" in fails(cfg)
    make(tmp_path, "d.jsonl", '{"a": 1, "label": "x"}\n')
    assert "label key 'y' not found" in fails(cfg) and "keys found: a, label" in fails(cfg)
    make(tmp_path, "d.jsonl", '{"a": 1, "y": "x"}\n{"a": 2}\n')
    assert "d.jsonl:2: label key 'y' is missing" in fails(cfg)


# -- NPZ -------------------------------------------------------------------------------------------------
def test_npz_string_and_integer_labels(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.arange(6, dtype=np.float64).reshape(3, 2), y=np.array(["b", "a", "b"]))
    ds = load(make(tmp_path, "d.npz", label=""))
    assert ds.feature_names == ["x0", "x1"] and ds.class_names == ["a", "b"] and ds.y_train.tolist() == [1, 0, 1]
    np.savez(tmp_path / "d.npz", x=np.ones((3, 2)), y=np.array([3, 1, 3]),
             feature_names=np.array(["p", "q"]))
    ds = load(make(tmp_path, "d.npz", label="", extra='features = ["q"]\nvalidation_split = 0.0'))
    assert ds.feature_names == ["q"] and ds.class_names == ["1", "3"] and ds.x_train.shape == (3, 1)


def test_npz_regression_and_errors(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((4, 3)), y=np.arange(4.0))
    ds = load(make(tmp_path, "d.npz", label="", task="regression", units=1))
    assert ds.y_train.shape == (4, 1)
    np.savez(tmp_path / "d.npz", features=np.ones((4, 3)), y=np.arange(4.0))
    assert "array 'x' (features [rows, columns]) not found; arrays found: features, y" in fails(
        make(tmp_path, "d.npz", label=""))
    x = np.ones((4, 3))
    x[2, 1] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(4.0))
    assert "x[2, 1] is nan" in fails(make(tmp_path, "d.npz", label=""))
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    assert "not a readable .npz file" in fails(make(tmp_path, "d.npz", label=""))


# -- splits and validation files ---------------------------------------------------------------------------
def big_csv(path: Path, n: int = 100) -> None:
    rows = [f"{i},{i % 3}" for i in range(n)]
    path.write_text("a,y\n" + "\n".join(rows) + "\n")


def test_validation_split_is_seeded(tmp_path):
    big_csv(tmp_path / "d.csv")
    cfg = make(tmp_path, "d.csv", None, extra="validation_split = 0.25", units=3)
    a, b = load(cfg), load(cfg)
    assert len(a.x_train) == 75 and len(a.x_val) == 25
    assert a.x_val.tolist() == b.x_val.tolist()
    assert load(cfg, ("train.seed=7",)).x_val.tolist() != a.x_val.tolist()
    together = sorted(a.x_train.ravel().tolist() + a.x_val.ravel().tolist())
    assert together == list(range(100))
    unshuffled = load(cfg, ("data.shuffle=false",))
    assert unshuffled.x_val.ravel().tolist() == list(range(75, 100))


def test_validation_path_shares_classes(tmp_path):
    big_csv(tmp_path / "d.csv")
    (tmp_path / "v.csv").write_text("y,a\n2,1.5\n0,2.5\n")
    cfg = make(tmp_path, "d.csv", None, extra='validation_path = "v.csv"', units=3)
    ds = load(cfg)
    assert ds.x_val.tolist() == [[1.5], [2.5]] and ds.y_val.tolist() == [2, 0]
    assert [f["role"] for f in ds.files] == ["train", "validation"]
    (tmp_path / "v.csv").write_text("y,a\n5,1.5\n")
    assert "v.csv: label '5' does not occur in the training data (classes: 0, 1, 2)" in fails(cfg)
    (tmp_path / "v.csv").write_text("y,b\n1,1.5\n")
    assert "v.csv: feature column 'a' not found" in fails(cfg)


def test_prepare_checks_output_units(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,y\n1,p\n2,q\n3,r\n", units=2)
    with pytest.raises(InvalidInput, match=r"model.layers\[0\].units: the output layer has 2 units but the data "
                                           r"has 3 classes \(p, q, r\); set units = 3"):
        prepare(cfg)


def test_class_mapping():
    names, lut = class_mapping(["b", "a", "c"])
    assert names == ["a", "b", "c"] and lut.tolist() == [1, 0, 2]
    names, lut = class_mapping(["10", "9", "9.0"])
    assert names == ["9", "10"] and lut.tolist() == [1, 0, 0]


def test_single_class_is_refused(tmp_path):
    cfg = make(tmp_path, "d.csv", "a,y\n1,x\n2,x\n")
    assert "d.csv: the label 'y' has a single value (x); classification needs at least two classes" in fails(cfg)


# -- property: whatever csv.writer writes, the fast loader reads back exactly ----------------------------

_floats = st.floats(allow_nan=False, allow_infinity=False, width=32)
_labels = st.text(alphabet='abcXYZ019 ,"\'-_', min_size=1, max_size=6).filter(lambda s: s.strip() != "")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 12).flatmap(lambda n: st.lists(
    st.tuples(st.lists(_floats, min_size=3, max_size=3), _labels), min_size=n, max_size=n)),
    label_at=st.integers(0, 3))
def test_csv_round_trip(tmp_path, rows, label_at):
    header = ["a", "b", "c"]
    header.insert(label_at, "y")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for values, label in rows:
        cells = [repr(float(v)) for v in values]
        cells.insert(label_at, label)
        writer.writerow(cells)
    cfg = make(tmp_path, "d.csv", buf.getvalue().encode())
    labels = [label.strip() for _, label in rows]
    if len(set(labels)) < 2:
        assert "classification needs at least two classes" in fails(cfg)
        return
    ds = load(cfg)
    assert ds.feature_names == ["a", "b", "c"]
    np.testing.assert_array_equal(ds.x_train, np.array([v for v, _ in rows], dtype=np.float32))
    assert ds.class_names == sorted(set(labels)) or all(_numeric(s) for s in labels)
    assert [ds.class_names[i] for i in ds.y_train] == [
        canonical(s, all(_numeric(t) for t in labels)) for s in labels]


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def canonical(s: str, numeric: bool) -> str:
    if not numeric:
        return s
    v = float(s)
    return str(int(v)) if v.is_integer() else repr(v)
