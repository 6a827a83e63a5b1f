"""Packages with well-formed archives but bad contents (issue 17 items 3 and 10): refused, exit 2, store unchanged."""

from __future__ import annotations

import gzip
import json

import pytest
from conftest import run_cli, tree_snapshot
from test_package import _members, _with_manifest, _write_tar, base  # noqa: F401 - base is a fixture

BAD_FIELDS = {
    "class_names": 5,
    "feature_names": "abcd",
    "metrics": "zz",
    "task": ["classification"],
    "tags": {"team": 5},
    "description": 7,
    "params": [1],
    "signatures": "serving_default",
}


def _set(field, value):
    def edit(doc):
        doc[field] = value
    return edit


CASES = {**{f: _set(f, v) for f, v in BAD_FIELDS.items()},
         "class_names-objects": _set("class_names", [{"x": 1}, None]),
         "signature-spec": lambda doc: doc["signatures"]["serving_default"]["inputs"].update({"features": 3}),
         "signature-shape": lambda doc: doc["signatures"]["serving_default"]["inputs"]["features"].update(
             {"shape": "[-1, 4]"})}


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifest_with_wrong_types_refused_at_register_and_inspect(case, base, tmp_path):  # noqa: F811
    pkg = _write_tar(tmp_path / "bad.maas", _with_manifest(_members(base["pkg"]), CASES[case]))
    field = case.split("-")[0]
    store = tmp_path / "store"
    run_cli("register", str(base["pkg"]), "--name", "ok", store=store)
    before = tree_snapshot(store)
    for args in (["register", str(pkg), "--name", "iris"], ["inspect", str(pkg)]):
        r = run_cli(*args, store=store)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and f"manifest field '{field}" in lines[0], lines
        assert "internal error" not in r.stderr
    assert tree_snapshot(store) == before


@pytest.mark.parametrize("junk", [b"JUNK", b"\0" * 20000 + b"x", b"PK\3\4" + bytes(range(256)) * 64], ids=["text", "zeros-then-x", "zip"])
@pytest.mark.parametrize("gz", [True, False])
def test_trailing_junk_after_the_tar_end_is_refused(base, tmp_path, junk, gz):  # noqa: F811
    tar = gzip.decompress(base["pkg"].read_bytes())
    data = tar + junk
    pkg = tmp_path / "junk.maas"
    pkg.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    store = tmp_path / "store"
    r = run_cli("register", str(pkg), "--name", "iris", store=store)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"Error: {pkg}: trailing data after the tar end-of-archive marker", r.stderr
    assert not store.exists()


def test_zero_padding_after_the_tar_end_is_fine(base, tmp_path):  # noqa: F811
    pkg = tmp_path / "padded.maas"
    pkg.write_bytes(gzip.compress(gzip.decompress(base["pkg"].read_bytes()) + b"\0" * 30000, mtime=0))
    r = run_cli("register", str(pkg), "--name", "iris", store=tmp_path / "store")
    assert r.returncode == 0, r.stderr


def test_inspect_says_not_verified_when_register_would_refuse(base, tmp_path):  # noqa: F811
    members = _members(base["pkg"])
    i = next(i for i, (m, _) in enumerate(members) if m.name.endswith("saved_model.pb"))
    info, data = members[i]
    members[i] = (info, bytes([data[0] ^ 1]) + data[1:])  # one flipped bit: the digest no longer matches
    pkg = _write_tar(tmp_path / "flipped.maas", members)
    r = run_cli("inspect", str(pkg), store=tmp_path / "store")
    assert r.returncode == 2, r.stderr
    assert "content_sha256" in r.stdout  # the manifest is still shown
    assert r.stderr.strip().startswith(f"Error: not verified; register would refuse: {pkg}: sha256 mismatch in "
                                       "saved_model/saved_model.pb"), r.stderr
    ok = run_cli("inspect", str(base["pkg"]), "--json", store=tmp_path / "store")
    assert ok.returncode == 0 and json.loads(ok.stdout)["name"] == "iris"
