"""Scoped tokens (serve --token-file) over real HTTP, and secrets that stay out of argv, records and logs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import run_cli

from maasctl.errors import InvalidInput
from maasctl.refs import parse_ref
from maasctl.serving.auth import TokenTable, required_scope
from maasctl.serving.server import ServeOptions, ServerThread, build_app
from maasctl.store import Store
from maasctl.store.signing import write_secret
from maasctl.tf.servable import store_loader

X = [[5.1, 3.5, 1.4, 0.2]]
TOKENS = {"predict": "tok-predict-7f3a", "read": "tok-read-91bc", "metrics": "tok-metrics-2d4e"}
TOKEN_FILE = "".join(f"{t} {scope}\n" for scope, t in TOKENS.items()) + "# a comment\n\ntok-both-55aa predict,read\n"


# -- the token file ----------------------------------------------------------------------------------------
def test_token_file_parses_scopes(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(TOKEN_FILE)
    table = TokenTable.load(path)
    assert table.scopes_of(b"tok-read-91bc") == {"read"}
    assert table.scopes_of(b"tok-both-55aa") == {"predict", "read"}
    assert table.scopes_of(b"tok-read-91bcX") is None and table.scopes_of(b"") is None
    assert table.token_with("metrics") == "tok-metrics-2d4e"
    assert "tok-" not in repr(table)


@pytest.mark.parametrize("text, message", [
    ("s3cretvalue\n", "line 1: expected 'TOKEN SCOPE[,SCOPE...]'"),
    ("# c\ns3cretvalue admin\n", "line 2: unknown scope 'admin'"),
    ("s3cretvalue predict extra\n", "line 1: expected"),
    ("s3cretvalue predict,\u00e9crire\n", "line 1: unknown scope"),
    ("# nothing\n", "no tokens"),
])
def test_token_file_errors_name_the_line_never_the_token(tmp_path, text, message):
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(InvalidInput) as info:
        TokenTable.load(path)
    assert message in str(info.value)
    assert "s3cretvalue" not in str(info.value) and str(path) in str(info.value)


def test_serve_token_file_errors_are_one_line_exit_2(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("s3cretvalue admin\n")
    r = run_cli("serve", "anything", "--token-file", str(path), store=tmp_path / "store")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown scope 'admin'" in r.stderr
    assert "s3cretvalue" not in r.stderr
    r = run_cli("serve", "anything", "--token-file", str(tmp_path / "missing"), store=tmp_path / "store")
    assert r.returncode == 2 and r.stderr.startswith("Error: --token-file") and "no such file" in r.stderr
    path.write_text("tok-a predict\n")
    r = run_cli("serve", "anything", "--token", "x", "--token-file", str(path), store=tmp_path / "store")
    assert r.returncode == 2 and "not both" in r.stderr


@pytest.mark.parametrize("path, scope", [
    ("/healthz", None), ("/readyz", "read"), ("/v1/models", "read"), ("/v1/models/a", "read"),
    ("/v1/models/a/versions/2/metadata", "read"), ("/v1/models/a:predict", "predict"),
    ("/v1/models/a/labels/x:classify", "predict"), ("/v1/models/a:regress", "predict"),
    ("/monitoring/prometheus/metrics", "metrics"), ("/nope", "read"), ("/v1/models/a:explain", "read"),
])
def test_required_scope(path, scope):
    assert required_scope(path) == scope


def test_secret_files_are_created_0600(tmp_path):
    old = os.umask(0o000)  # even with the most permissive umask
    try:
        write_secret(tmp_path / "key.pem", b"secret")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_secret(tmp_path / "key.pem", b"other")


# -- every route x every scope, over real HTTP -------------------------------------------------------------
CLASSES = ["a", "b", "c"]
ROUTES = [  # method, path, body, scope it needs, status when allowed
    ("GET", "/healthz", None, None, 200),
    ("GET", "/readyz", None, "read", 200),
    ("GET", "/v1/models", None, "read", 200),
    ("GET", "/v1/models/small", None, "read", 200),
    ("GET", "/v1/models/small/versions/1", None, "read", 200),
    ("GET", "/v1/models/small/metadata", None, "read", 200),
    ("GET", "/v1/models/small/versions/1/metadata", None, "read", 200),
    ("GET", "/v1/models/nope", None, "read", 404),
    ("GET", "/monitoring/prometheus/metrics", None, "metrics", 200),
    ("POST", "/v1/models/small:predict", {"instances": X}, "predict", 200),
    ("POST", "/v1/models/small/versions/1:predict", {"instances": X}, "predict", 200),
    ("POST", "/v1/models/iris:classify", {"examples": [{"features": X[0]}]}, "predict", 200),
    ("POST", "/v1/models/reg:regress", {"examples": [{"features": X[0]}]}, "predict", 200),
]
CALLERS = {"none": None, "wrong": "tok-wrong", **TOKENS, "both": "tok-both-55aa"}


@pytest.fixture(scope="module")
def scoped_server(tf, models, tmp_path_factory):
    root = tmp_path_factory.mktemp("scoped")
    store = Store(root / "store")
    store.register(models["small"], "small")
    store.register(models["small"], "iris", meta={"task": "classification", "class_names": CLASSES})
    store.register(models["small_b"], "reg", meta={"task": "regression"})
    path = root / "tokens"
    path.write_text(TOKEN_FILE)
    refs = [parse_ref(r) for r in ("small", "iris", "reg")]
    server = ServerThread(build_app(store, refs, ServeOptions(tokens=TokenTable.load(path)),
                                    loader=store_loader(store))).start()
    server.wait_ready()
    yield server.url
    server.stop()


def _expected(caller: str, scope: str | None, allowed: int) -> int:
    if scope is None:
        return allowed
    if caller in ("none", "wrong"):
        return 401
    granted = {"predict", "read"} if caller == "both" else {caller}
    return allowed if scope in granted else 403


@pytest.mark.tf
@pytest.mark.parametrize("method, path, body, scope, allowed", ROUTES, ids=[r[1] + " " + r[0] for r in ROUTES])
def test_each_scope_reaches_exactly_its_routes(scoped_server, method, path, body, scope, allowed):
    got = {}
    for caller, token in CALLERS.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = requests.request(method, scoped_server + path, headers=headers, timeout=30,
                             data=json.dumps(body) if body is not None else None)
        got[caller] = r.status_code
        if r.status_code == 403:
            assert r.json()["error"].startswith(f"this token lacks the '{scope}' scope")
            assert f'scope="{scope}"' in r.headers["www-authenticate"]
        if r.status_code == 401:
            assert r.headers["www-authenticate"].startswith("Bearer")
    assert got == {c: _expected(c, scope, allowed) for c in CALLERS}


# -- secrets stay out of argv, records, logs and `ps` -----------------------------------------------------
def _machine_ps() -> str:
    return subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True, check=True).stdout


def _all_text(root) -> str:
    return "\n".join(p.read_bytes().decode(errors="replace") for p in sorted(root.rglob("*")) if p.is_file())


@pytest.mark.tf
@pytest.mark.slow
def test_detached_servers_keep_tokens_out_of_argv_records_and_logs(tmp_path, models):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    path = tmp_path / "tokens"
    path.write_text(TOKEN_FILE)
    path.chmod(0o600)
    env_token = "tok-env-c0ffee"
    r1 = run_cli("serve", "small", "--port", "0", "--detach", "--json", "--token-file", str(path), store=store.root)
    assert r1.returncode == 0, r1.stderr
    r2 = run_cli("serve", "small", "--port", "0", "--detach", "--json", store=store.root,
                 env={"MAASCTL_TOKEN": env_token})
    assert r2.returncode == 0, r2.stderr
    scoped, single = json.loads(r1.stdout), json.loads(r2.stdout)
    try:
        predict = {"data": json.dumps({"instances": X}), "timeout": 30}
        url = scoped["url"] + "/v1/models/small:predict"
        assert requests.post(url, headers={"Authorization": f"Bearer {TOKENS['predict']}"}, **predict).status_code == 200
        assert requests.post(url, headers={"Authorization": f"Bearer {TOKENS['read']}"}, **predict).status_code == 403
        assert requests.post(url, **predict).status_code == 401
        url = single["url"] + "/v1/models/small:predict"
        assert requests.post(url, headers={"Authorization": f"Bearer {env_token}"}, **predict).status_code == 200
        assert requests.get(single["url"] + "/monitoring/prometheus/metrics", timeout=30,
                            headers={"Authorization": f"Bearer {env_token}"}).status_code == 200
        ps_json = run_cli("ps", "--json", store=store.root)
        assert ps_json.returncode == 0 and len(json.loads(ps_json.stdout)) == 2
        ps_text = run_cli("ps", store=store.root)
        machine = _machine_ps()
        assert f"--token-file {path}" in machine  # the child got the file's path ...
        secrets = [*TOKENS.values(), "tok-both-55aa", env_token]
        for where, text in [("ps -e", machine), ("maasctl ps --json", ps_json.stdout + ps_json.stderr),
                            ("maasctl ps", ps_text.stdout + ps_text.stderr), ("servers/", _all_text(store.servers_dir)),
                            ("serve output", r1.stdout + r1.stderr + r2.stdout + r2.stderr)]:
            for secret in secrets:  # ... and no token appears anywhere
                assert secret not in text, f"{secret} found in {where}"
        for pid in (scoped["pid"], single["pid"]):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert all(s.encode() not in cmdline for s in secrets)
        assert {p.suffix for p in store.servers_dir.iterdir()} == {".json", ".log"}
    finally:
        for doc in (scoped, single):
            run_cli("stop", doc["id"], store=store.root)
    assert not any(s in _all_text(store.servers_dir) for s in TOKENS.values())


@pytest.mark.tf
def test_detach_token_file_needs_a_read_token_for_the_probe(tmp_path, models):
    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    path = tmp_path / "tokens"
    path.write_text("tok-p predict\n")
    path.chmod(0o644)
    r = run_cli("serve", "small", "--port", "0", "--detach", "--token-file", str(path), store=store.root)
    assert r.returncode == 2, r.stderr
    assert "needs a token with the 'read' scope" in r.stderr and "tok-p" not in r.stderr
    assert f"warning: {path} is readable by other users (mode 0644)" in r.stderr
    assert not store.servers_dir.exists() or not list(store.servers_dir.iterdir())


def test_command_line_token_warns(tmp_path):
    r = run_cli("serve", "nope", "--token", "s3cret", store=tmp_path / "store")
    assert r.returncode == 3
    assert "warning: --token on the command line is visible to other local users" in r.stderr
    r = run_cli("serve", "nope", store=tmp_path / "store", env={"MAASCTL_TOKEN": "s3cret"})
    assert r.returncode == 3 and "warning" not in r.stderr
