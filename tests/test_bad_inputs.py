"""Each bad input is one line, exit 2 (or 1 naming the path for environment problems), never an internal error
(issue 17 item 9). Real subprocesses; none of these needs TensorFlow."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
from conftest import TINY_CSV_CONFIG as CONFIG
from conftest import run_cli


def _one_line(r, code: int, *needles: str) -> None:
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert "internal error" not in lines[0] and "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def _train(tmp_path, name: str, data: bytes | None = None, config: str | None = None):
    if data is not None:
        (tmp_path / name).write_bytes(data)
    cfg = tmp_path / "config.toml"
    cfg.write_text(config if config is not None else CONFIG.format(name=name))
    return run_cli("train", str(cfg), store=tmp_path / "store")


def test_random_bytes_csv(tmp_path):
    _one_line(_train(tmp_path, "data.csv", b"a,b,y\n" + bytes(range(128, 256)) * 20), 2, "data.csv", "UTF-8")


def test_garbage_npz(tmp_path):
    _one_line(_train(tmp_path, "data.npz", b"PK\x03\x04" + os.urandom(300)), 2, "data.npz", "not a readable .npz")


def test_toml_nested_thousands_of_levels(tmp_path):
    deep = "x = " + "[" * 3000 + "]" * 3000 + "\n"
    _one_line(_train(tmp_path, "data.csv", b"a,y\n1,p\n", config=deep), 2, "config.toml", "nested too deeply")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_fifo_or_device_as_data_path(tmp_path, kind):
    if kind == "fifo":
        os.mkfifo(tmp_path / "data.csv")
        name = "data.csv"
    else:
        (tmp_path / "data.csv").symlink_to("/dev/zero")
        name = "data.csv"
    _one_line(_train(tmp_path, name), 2, "not a regular file")


def test_store_under_a_regular_file_names_the_path(tmp_path, models):
    (tmp_path / "file").write_text("x")
    r = run_cli("--store", str(tmp_path / "file" / "store"), "register", str(models["small"]), "--name", "iris")
    _one_line(r, 1, str(tmp_path / "file"), "Not a directory")


def _package(tmp_path, manifest: bytes):
    pkg = tmp_path / "bad.maas"
    with tarfile.open(pkg, "w:gz") as tar:
        info = tarfile.TarInfo("maas.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return pkg


def test_manifest_nested_thousands_of_levels(tmp_path):
    pkg = _package(tmp_path, b'{"format_version": 1, "x": ' + b"[" * 6000 + b"]" * 6000 + b"}")
    for args in (["register", str(pkg), "--name", "iris"], ["inspect", str(pkg)]):
        _one_line(run_cli(*args, store=tmp_path / "store"), 2, str(pkg), "nested too deeply")


def test_manifest_path_not_utf8(tmp_path):
    doc = {"format_version": 1, "name": "iris", "signatures": {}, "content_sha256": "0" * 64,
           "files": [{"path": "saved_model/\udcff.pb", "size": 1, "sha256": "0" * 64}]}
    pkg = _package(tmp_path, json.dumps(doc).encode())  # json escapes the lone surrogate as \\udcff
    _one_line(run_cli("register", str(pkg), "--name", "iris", store=tmp_path / "store"), 2, "files[0].path",
              "UTF-8")
