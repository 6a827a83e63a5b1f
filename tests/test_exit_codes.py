"""Exit codes for missing files agree (issue 11, item 18): a file that does not exist is 3, "not found"."""

from __future__ import annotations

from conftest import run_cli


def test_a_missing_file_is_exit_3_everywhere(tmp_path):
    config = tmp_path / "wine.toml"
    config.write_text('[data]\npath = "absent.csv"\nlabel = "quality"\n[model]\ntask = "classification"\n'
                      '[[model.layers]]\ntype = "Dense"\nunits = 4\n')
    cases = [
        (["train", str(tmp_path / "nope.toml")], "config file not found"),
        (["train", str(config)], f"data.path: file not found: {tmp_path / 'absent.csv'}"),
        (["predict", "-m", "iris", "-i", str(tmp_path / "missing.json")], "missing.json: no such file"),
        (["register", str(tmp_path / "missing"), "--name", "x"], "no such directory, package file or run id"),
        (["inspect", str(tmp_path / "missing.maas")], "missing.maas"),
    ]
    for args, message in cases:
        r = run_cli(*args, store=tmp_path / "store")
        assert (r.returncode, r.stderr.count("\n")) == (3, 1), (args, r.stderr)
        assert r.stderr.startswith("Error: ") and message in r.stderr, (args, r.stderr)
