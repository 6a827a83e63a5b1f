"""Packages with well-formed archives but bad contents (issue 17 items 3 and 10): refused, exit 2, store unchanged."""

from __future__ import annotations

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
