"""Huge CSV / JSON Lines lines are refused up front in train and predict (issue 17 item 5)."""

from __future__ import annotations

import pytest
from conftest import TINY_CSV_CONFIG as CONFIG
from conftest import run_cli

from maasctl.errors import InvalidInput
from maasctl.store import Store

HEAD = "a,b,c,d,y\n1,2,3,4,p\n5,6,7,8,q\n"


def _huge(tmp_path, name: str, size: int, *, quoted: bool = False):
    path = tmp_path / name
    with open(path, "w") as f:
        f.write(HEAD)
        f.write('"' if quoted else "")
        f.write("9" * size)
        f.write('"' if quoted else "")
        f.write(",1,2,3,p\n" + HEAD.split("\n", 1)[1])
    return path


@pytest.mark.parametrize("quoted", [False, True])
def test_train_refuses_a_huge_csv_line_naming_file_and_line(tmp_path, quoted):
    data = _huge(tmp_path, "data.csv", 40 * 1024 * 1024, quoted=quoted)
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG.format(name=data.name))
    r = run_cli("train", str(cfg), store=tmp_path / "store")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [(f"Error: {data}: line 4 is longer than 4194304 bytes, the limit for "
                                              "one line (set MAASCTL_MAX_LINE_BYTES to raise it)")]


def test_line_limit_is_configurable_and_counts_lines_across_chunks(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text(HEAD + "1,2,3,4,p\n" * 1_000_000 + "1,2,3,4," + "p" * 200 + "\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG.format(name=data.name))
    r = run_cli("train", str(cfg), store=tmp_path / "store", env={"MAASCTL_MAX_LINE_BYTES": "100"})
    assert r.returncode == 2 and f"{data}: line 1000004 is longer than 100 bytes" in r.stderr, r.stderr
    r = run_cli("train", str(cfg), store=tmp_path / "store", env={"MAASCTL_MAX_LINE_BYTES": "zz"})
    assert r.returncode == 2 and "MAASCTL_MAX_LINE_BYTES='zz'" in r.stderr, r.stderr


@pytest.mark.tf
def test_predict_refuses_a_huge_csv_line_naming_file_and_line(tmp_path, models):
    store = Store(tmp_path / "store")
    store.register(models["small"], "iris")
    path = tmp_path / "in.csv"
    path.write_text("a,b,c,d\n1,2,3,4\n5,6,7,8\n" + "9" * (40 * 1024 * 1024) + ",1,2,3\n1,2,3,4\n")
    r = run_cli("predict", "--model", "iris", "--local", "--input", str(path), store=store.root)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"Error: {path}: line 4 is longer than 4194304 bytes"), \
        r.stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_predict_input_stream_reads_at_most_the_cap(tmp_path, monkeypatch, fmt):
    """stdin or a FIFO can't be scanned first: lines are read with a bound, so a huge one never sits in memory."""
    import io

    from maasctl.predict.inputs import InputSource

    monkeypatch.setenv("MAASCTL_MAX_LINE_BYTES", "1000")
    if fmt == "csv":
        text = "a,b,c,d\n1,2,3,4\n" + "9" * 5000 + ",1,2,3\n"
    else:
        text = '{"features": [1, 2, 3, 4]}\n{"features": [1, 2, 3, 4]}\n[' + "1," * 3000 + "1]\n"
    src = InputSource("-", fmt, stream=io.StringIO(text))
    if fmt == "csv":
        src.header()
    with pytest.raises(InvalidInput, match="<stdin>: line 3 is longer than 1000 bytes"):
        list(src.chunks(1))
