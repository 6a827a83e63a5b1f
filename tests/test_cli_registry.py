"""The registry commands: output, JSON keys, exit codes (in-process through CliRunner; `python -m maasctl`
and a closed stdout pipe in real subprocesses)."""

import json

import pytest
from conftest import cli, run_cli, tree_snapshot


@pytest.fixture
def populated(store_path, saved_models):
    for src, extra in ((saved_models["small"], ["--alias", "candidate"]), (saved_models["small_b"], [])):
        r = cli("register", str(src), "--name", "iris", *extra, store=store_path)
        assert r.returncode == 0, r.stderr
    return store_path


def test_register_prints_ref_and_json(store_path, saved_models):
    r = cli("register", str(saved_models["small"]), "--name", "iris", store=store_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "iris@1\n", "")
    r = cli("register", str(saved_models["small"]), "--name", "iris", "--json", store=store_path)
    doc = json.loads(r.stdout)
    assert r.returncode == 0
    assert {k: doc[k] for k in ("ref", "name", "version", "created")} == \
        {"ref": "iris@1", "name": "iris", "version": 1, "created": False}
    r = cli("register", str(saved_models["small"]), "--name", "iris", "--new-version", "--tag", "team=ml",
                "--description", "retrained", "--json", store=store_path)
    doc = json.loads(r.stdout)
    assert (doc["version"], doc["created"], doc["tags"], doc["description"]) == (2, True, {"team": "ml"}, "retrained")


def test_list_and_show(populated):
    r = cli("list", store=populated)
    assert r.returncode == 0
    assert r.stdout.splitlines() == ["NAME  LATEST  VERSIONS  ALIASES", "iris  2       2         candidate->1"]
    models = json.loads(cli("list", "--json", store=populated).stdout)
    assert models == [{"name": "iris", "latest": 2, "versions": 2, "aliases": {"candidate": 1},
                       "created_at": models[0]["created_at"]}]
    versions = json.loads(cli("list", "iris", "--json", store=populated).stdout)
    assert [(v["version"], v["aliases"]) for v in versions] == [(1, ["candidate"]), (2, [])]
    show = json.loads(cli("show", "iris@candidate", "--json", store=populated).stdout)
    for key in ("name", "version", "aliases", "sha256", "size", "created_at", "signatures"):
        assert key in show
    assert show["signatures"]["serving_default"]["inputs"]["features"]["shape"] == [-1, 4]
    text = cli("show", "iris", store=populated).stdout
    assert "serving_default  input   features  float32[-1, 4]" in text


def test_alias_commands_and_history(populated):
    r = cli("alias", "set", "iris@2", "candidate", store=populated)
    assert (r.returncode, r.stdout) == (0, "iris@candidate -> 2 (was 1)\n")
    hist = json.loads(cli("alias", "history", "iris", "candidate", "--json", store=populated).stdout)
    assert [(e["from_version"], e["to_version"]) for e in hist] == [(None, 1), (1, 2)]
    r = cli("alias", "rm", "iris", "candidate", store=populated)
    assert r.returncode == 0
    r = cli("show", "iris@candidate", store=populated)
    assert r.returncode == 3
    assert r.stderr == ("Error: model 'iris' has no alias 'candidate' (it has no aliases). "
                        "See: maasctl alias set iris@VERSION candidate\n")


def test_alias_list(populated, saved_models):
    assert cli("alias", "set", "iris@2", "production", store=populated).returncode == 0
    assert cli("register", str(saved_models["small"]), "--name", "wine", "--alias", "staging",
               store=populated).returncode == 0
    r = cli("alias", "list", store=populated)
    assert (r.returncode, r.stdout.splitlines()) == (0, ["NAME  ALIAS       VERSION", "iris  candidate   1",
                                                         "iris  production  2", "wine  staging     1"])
    doc = json.loads(cli("alias", "list", "iris", "--json", store=populated).stdout)
    assert doc == [{"name": "iris", "alias": "candidate", "version": 1},
                   {"name": "iris", "alias": "production", "version": 2}]


def test_rm_refuses_aliased_version(populated):
    r = cli("rm", "iris@1", store=populated)
    assert r.returncode == 1
    assert "alias(es) candidate" in r.stderr and r.stderr.count("\n") == 1
    assert cli("rm", "iris@1", "--force", store=populated).returncode == 0
    assert cli("show", "iris@1", store=populated).returncode == 3


@pytest.mark.parametrize("args,code,message", [
    (["register", "{tmp}", "--name", "iris"], 2, "not a SavedModel: no saved_model.pb"),
    (["register", "{tmp}/missing", "--name", "iris"], 3, "no such directory, package file or run id"),
    (["register", "{small}", "--name", "Iris!"], 2, "invalid model name 'Iris!'"),
    (["register", "{small}"], 2, "--name is required"),
    (["show", "iris@7"], 3, "model 'iris' has no version 7 (latest is 2). See: maasctl list iris"),
    (["show", "nosuch"], 3, "model 'nosuch' not found"),
    (["alias", "set", "iris@1", "42"], 2, "an alias cannot be all digits"),
    (["alias", "set", "iris@9", "prod"], 3, "no version 9"),
    (["rm", "iris@prod"], 3, "has no alias 'prod'"),
    (["rm", "iris"], 2, "say which version to remove: iris@2"),
    (["alias", "list", "nosuch"], 3, "model 'nosuch' not found"),
    (["list", "--bogus"], 2, "No such option: --bogus"),
    (["frobnicate"], 2, "No such command 'frobnicate'"),
])
def test_bad_input_one_line_and_store_unchanged(populated, saved_models, tmp_path, args, code, message):
    args = [a.format(tmp=tmp_path, small=saved_models["small"]) for a in args]
    before = tree_snapshot(populated)
    r = cli(*args, store=populated)
    assert r.returncode == code, r.stderr
    assert r.stderr.startswith("Error: ") and message in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert tree_snapshot(populated) == before


def test_verify_reports_tampering(populated):
    assert cli("verify", store=populated).returncode == 0
    target = populated / "models" / "iris" / "2" / "variables" / "variables.data-00000-of-00001"
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))
    r = cli("verify", store=populated)
    assert r.returncode == 1
    assert "iris@2: sha256 mismatch in variables/variables.data-00000-of-00001" in r.stderr
    doc = json.loads(cli("verify", "--json", store=populated).stdout)
    assert doc["ok"] is False and [v["ok"] for v in doc["versions"]] == [True, False]


def test_debug_shows_traceback_only_when_asked(store_path):
    r = cli("--debug", "show", "iris", store=store_path)
    assert r.returncode == 3 and "Traceback" in r.stderr
    r = cli("show", "iris", store=store_path, env={"MAASCTL_DEBUG": ""})
    assert "Traceback" not in r.stderr


def test_store_flag_and_env(tmp_path, saved_models):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli("--store", str(a), "register", str(saved_models["small"]), "--name", "m", store=b).returncode == 0
    assert json.loads(cli("list", "--json", store=a).stdout)[0]["name"] == "m"
    assert json.loads(cli("list", "--json", store=b).stdout) == []


def test_gc_cli(populated):
    (populated / "staging" / "999-dead").mkdir(parents=True)
    doc = json.loads(cli("gc", "--json", store=populated).stdout)
    assert doc["staging_removed"] == ["999-dead"]


def test_python_dash_m_and_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("maasctl ")


def test_closed_stdout_pipe_is_not_an_error(populated):
    """`maasctl list | head -0` in a pipefail script: the reader stopped reading; exit 0, no traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MAASCTL_HOME": str(populated)}
    p = subprocess.Popen([sys.executable, "-m", "maasctl", "list", "iris", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    p.stdout.close()  # long before the child writes anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["--store", ""], ["--store="], ["--store", " "]])
def test_empty_store_path_is_refused_and_nothing_written(tmp_path, args):
    r = run_cli(*args, "gc", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("Error: --store: the store path is empty"), r.stderr
    assert list(tmp_path.iterdir()) == []
