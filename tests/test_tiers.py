"""The test tiers themselves: the `tf` marker follows fixture use, and the fast tier's TensorFlow guard bites."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import FORBID_ENV, GUARD_DIR, REPO


def _pytest(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (FORBID_ENV, "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests")])
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120, check=False)


def test_tf_marker_follows_fixture_use():
    r = _pytest("--collect-only", "-q", "-m", "tf", "tests/test_store.py", "tests/test_savedmodel.py")
    selected = {line.split("::")[1].split("[")[0] for line in r.stdout.splitlines() if "::" in line}
    # through `tf` directly, and through `models`, which depends on it; nothing else in these files
    assert selected == {"test_loaded_version_predicts_like_source", "test_refused_load_of_tampered_version",
                        "test_signatures_match_tensorflow"}, r.stdout


def test_guard_refuses_tensorflow_in_subprocesses_and_lets_the_cli_run():
    env = {**os.environ, FORBID_ENV: "1",
           "PYTHONPATH": os.pathsep.join([str(GUARD_DIR), str(REPO)])}
    r = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=env,
                       timeout=60, check=False)
    assert r.returncode != 0 and "tensorflow imported in the TensorFlow-free test tier" in r.stderr
    r = subprocess.run([sys.executable, "-m", "maasctl", "--version"], capture_output=True, text=True, env=env,
                       timeout=60, check=False)
    assert r.returncode == 0 and r.stdout.startswith("maasctl "), r.stderr


def test_fast_tier_fails_a_run_that_imports_tensorflow(tmp_path):
    """An unmarked test that imports TensorFlow fails `-m "not tf"`, even if it swallows the ImportError."""
    probe = tmp_path / "test_probe.py"
    probe.write_text("def test_sneaky():\n    try:\n        import tensorflow  # noqa: F401\n"
                     "    except ImportError:\n        pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    r = _pytest("-p", "conftest", "-q", "-m", "not tf", str(probe), cwd=tmp_path)  # our conftest, as a plugin
    assert "1 passed" in r.stdout, r.stdout  # the test itself passed ...
    assert r.returncode != 0  # ... and the run failed
    assert "the TensorFlow-free tier imported TensorFlow (tensorflow)" in r.stdout + r.stderr
