"""`data.path` as a list, a glob, or s3:// (moto's real server on 127.0.0.1); no TensorFlow."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import cli

from maasctl.errors import InvalidInput, NotFound
from maasctl.training.data import prepare

CONFIG = """[data]
path = {path}
label = "kind"
validation_split = 0.0
[model]
task = "classification"
[[model.layers]]
type = "Dense"
units = 3
activation = "softmax"
"""

PART1 = "a,b,kind\n1,2,cat\n3,4,dog\n5,6,cat\n"
PART2 = "a,b,kind\n7,8,bird\n9,10,dog\n"


@pytest.fixture
def parts(tmp_path) -> Path:
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "p1.csv").write_text(PART1)
    (tmp_path / "parts" / "p2.csv").write_text(PART2)
    return tmp_path


def config(root: Path, path: str) -> Path:
    p = root / "c.toml"
    p.write_text(CONFIG.format(path=path))
    return p


def check_both_parts(ds, names: list[str]) -> None:
    assert ds.x_train.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]
    assert ds.class_names == ["bird", "cat", "dog"]
    assert [ds.class_names[i] for i in np.asarray(ds.y_train).ravel()] == ["cat", "dog", "cat", "bird", "dog"]
    assert [f["path"] for f in ds.files] == names and {f["role"] for f in ds.files} == {"train"}
    assert [f["sha256"] for f in ds.files] == [hashlib.sha256(t.encode()).hexdigest() for t in (PART1, PART2)]


def test_glob_and_list(parts):
    names = [str(parts / "parts" / "p1.csv"), str(parts / "parts" / "p2.csv")]
    _, ds = prepare(config(parts, '"parts/p*.csv"'))
    check_both_parts(ds, names)
    _, ds = prepare(config(parts, '["parts/p1.csv", "parts/p2.csv", "parts/p1.csv"]'))  # each file once
    check_both_parts(ds, names)


def test_a_config_given_by_a_relative_path_in_another_folder(parts, monkeypatch):
    """`maasctl train examples/iris/config.toml` from the repository root: data.path is relative to the config's
    folder, once (it was prefixed twice: 'file not found: examples/iris/examples/iris/iris.csv')."""
    monkeypatch.chdir(parts.parent)
    relative = Path(parts.name)
    for path in ('["parts/p1.csv", "parts/p2.csv"]', '"parts/p*.csv"'):
        _, ds = prepare(relative / config(parts, path).name)
        assert [f["path"] for f in ds.files] == [str(parts / "parts" / f"p{i}.csv") for i in (1, 2)]
    (parts / "v.csv").write_text(PART1)
    text = config(parts, '"parts/p*.csv"').read_text().replace("validation_split = 0.0", 'validation_path = "v.csv"')
    (parts / "c.toml").write_text(text)
    _, ds = prepare(relative / "c.toml")
    assert ds.files[-1] == {**ds.files[-1], "role": "validation", "path": str(parts / "v.csv")}


def test_bad_paths(parts):
    with pytest.raises(NotFound, match=r"c\.toml: data\.path: no file matches .*parts/q\*\.csv$"):
        prepare(config(parts, '"parts/q*.csv"'))
    with pytest.raises(InvalidInput, match="data.path: expected files of one type"):
        prepare(config(parts, '["parts/p1.csv", "x.jsonl"]'))
    r = cli("train", str(config(parts, "[]")), store=parts / "store")
    assert r.returncode == 2 and "data.path: expected a file, a glob or a non-empty list of files" in r.stderr


def test_s3_glob_and_missing_object(s3_endpoint, parts):
    import boto3

    bucket = f"data-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="sets/p1.csv", Body=PART1.encode())
    s3.put_object(Bucket=bucket, Key="sets/p2.csv", Body=PART2.encode())
    s3.put_object(Bucket=bucket, Key="sets/readme.txt", Body=b"not data")
    _, ds = prepare(config(parts, f'"s3://{bucket}/sets/p*.csv"'))
    check_both_parts(ds, [f"s3://{bucket}/sets/p1.csv", f"s3://{bucket}/sets/p2.csv"])
    _, ds = prepare(config(parts, f'["s3://{bucket}/sets/p1.csv", "parts/p2.csv"]'))
    check_both_parts(ds, [f"s3://{bucket}/sets/p1.csv", str(parts / "parts" / "p2.csv")])
    # sharded by file: worker 1 of 2 downloads and reads only the second object
    from maasctl.training import sources

    before = set(Path(sources._TMP[0]).iterdir())
    tf_config = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}})
    _, ds = prepare(config(parts, f'"s3://{bucket}/sets/p*.csv"'), env={"TF_CONFIG": tf_config})
    assert ds.x_train.tolist() == [[7, 8], [9, 10]] and ds.shard is not None
    assert ds.reading == f"reads 1 of 2 files (sharded by file): s3://{bucket}/sets/p2.csv"
    assert [p.name.split("-", 1)[1] for p in set(Path(sources._TMP[0]).iterdir()) - before] == ["p2.csv"]
    with pytest.raises(NotFound, match=rf"data\.path: object not found: s3://{bucket}/sets/p3\.csv$"):
        prepare(config(parts, f'"s3://{bucket}/sets/p3.csv"'))
    # sharded by file, an object of its own that is missing: ShardUnreadable (exit 3), which the worker reports
    # to the others; the worker whose object exists reads it
    from maasctl.training.shard import ShardUnreadable

    two = f'["s3://{bucket}/sets/p1.csv", "s3://{bucket}/sets/p3.csv"]'
    with pytest.raises(ShardUnreadable, match=rf"data\.path: object not found: s3://{bucket}/sets/p3\.csv$") as info:
        prepare(config(parts, two), env={"TF_CONFIG": tf_config})
    assert info.value.exit_code == 3 and isinstance(info.value.cause, NotFound)
    chief = tf_config.replace('"index": 1', '"index": 0')
    _, ds = prepare(config(parts, two), env={"TF_CONFIG": chief})
    assert ds.x_train.tolist() == [[1, 2], [3, 4], [5, 6]]
    with pytest.raises(NotFound, match=rf"data\.path: no object matches s3://{bucket}/other/\*\.csv$"):
        prepare(config(parts, f'"s3://{bucket}/other/*.csv"'))
