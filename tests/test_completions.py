"""Shell completion: committed scripts are current, and real bash completes subcommands and store refs.

The completion scripts call `maasctl` back at TAB time, so the bash tests put a `maasctl` wrapper for this
checkout's interpreter on PATH and drive real bash: once by calling the completion function with
COMP_WORDS/COMP_CWORD set (as bash's programmable completion does), once through an interactive bash on a
pseudo-terminal pressing TAB.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, cli

COMPLETIONS = REPO / "completions"
FILES = {"bash": "maasctl.bash", "zsh": "_maasctl", "fish": "maasctl.fish"}
BASH = shutil.which("bash")
ZSH = shutil.which("zsh")
FISH = shutil.which("fish")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")


@pytest.fixture(scope="module")
def iris_store(saved_models, tmp_path_factory) -> Path:
    """A store with iris@1 (production), iris@2 (candidate), houses@1, and one run directory."""
    from maasctl.store import Store

    root = tmp_path_factory.mktemp("completion") / "store"
    store = Store(root)
    store.register(saved_models["small"], "iris", aliases=["production"])
    store.register(saved_models["small_b"], "iris", aliases=["candidate"])
    store.register(saved_models["small"], "houses")
    run = store.runs_dir / "20261123-120000-abc123"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory) -> Path:
    """A directory holding a `maasctl` executable that runs this checkout with this interpreter."""
    d = tmp_path_factory.mktemp("bin")
    exe = d / "maasctl"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m maasctl "$@"\n')
    exe.chmod(0o755)
    return d


def _env(bin_dir: Path, store: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAASCTL_", "_MAASCTL", "COMP_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if store is not None:
        env["MAASCTL_HOME"] = str(store)
    return env


def bash_complete(words: list[str], bin_dir: Path, store: Path | None, cwd: Path = REPO) -> list[str]:
    """COMPREPLY after calling the loaded completion function on `words` (the last one is being completed).

    Sets COMP_LINE and COMP_POINT as bash does (the script reads those, not COMP_WORDS). COMPREPLY holds what
    replaces the text after the last word-break character, e.g. `production` for `iris@p`.
    """
    line = " ".join(words)
    script = (f"source {COMPLETIONS / FILES['bash']}\n"
              f"COMP_LINE={_quote(line)}; COMP_POINT={len(line)}; COMPREPLY=()\n"
              "_maasctl_completion maasctl\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    proc = subprocess.run([BASH, "--norc", "--noprofile", "-c", script], capture_output=True, text=True, check=False,
                          env=_env(bin_dir, store), cwd=cwd, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# -- the committed scripts ---------------------------------------------------------------------------
@pytest.mark.parametrize("shell", sorted(FILES))
def test_committed_script_is_current(shell: str) -> None:
    from maasctl.cli.completion import completion_script

    committed = (COMPLETIONS / FILES[shell]).read_text()
    assert committed == completion_script(shell), (
        f"completions/{FILES[shell]} is stale; regenerate: maasctl completion {shell} > completions/{FILES[shell]}")


def test_cli_prints_the_committed_bash_script() -> None:
    proc = cli("completion", "bash")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (COMPLETIONS / FILES["bash"]).read_text()


def test_unknown_shell_is_a_usage_error() -> None:
    proc = cli("completion", "tcsh", env={"SHELL": "/bin/bash"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "Error: unsupported shell 'tcsh'; expected one of bash, zsh, fish"
    assert proc.stdout == ""


def test_shell_detected_from_environment() -> None:
    proc = cli("completion", env={"SHELL": "/usr/bin/fish"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (COMPLETIONS / FILES["fish"]).read_text()
    proc = cli("completion", env={"SHELL": "/bin/tcsh"})
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: cannot tell the shell from $SHELL='/bin/tcsh'")


@needs_bash
def test_bash_scripts_parse() -> None:
    proc = subprocess.run([BASH, "-n", str(COMPLETIONS / FILES["bash"])], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# -- real bash, completion function called as bash's programmable completion does ---------------------
@needs_bash
def test_bash_completes_subcommands_and_options(bin_dir: Path, iris_store: Path) -> None:
    assert bash_complete(["maasctl", "se"], bin_dir, iris_store) == ["serve"]
    assert bash_complete(["maasctl", "alias", "h"], bin_dir, iris_store) == ["history"]
    assert "--json" in bash_complete(["maasctl", "show", "--j"], bin_dir, iris_store)
    assert bash_complete(["maasctl", "completion", ""], bin_dir, iris_store) == ["bash", "zsh", "fish"]


@needs_bash
def test_bash_completes_refs_from_the_store(bin_dir: Path, iris_store: Path) -> None:
    refs = ["iris", "iris@candidate", "iris@production", "iris@2", "iris@1"]
    assert bash_complete(["maasctl", "show", "ir"], bin_dir, iris_store) == refs
    # bash splits words at '@' (COMP_WORDBREAKS): what replaces the text after it is the rest of the ref
    assert bash_complete(["maasctl", "show", "iris@p"], bin_dir, iris_store) == ["production"]
    assert bash_complete(["maasctl", "rm", "h"], bin_dir, iris_store) == ["houses", "houses@1"]
    assert bash_complete(["maasctl", "list", ""], bin_dir, iris_store) == ["houses", "iris"]
    assert bash_complete(["maasctl", "alias", "rm", "iris", ""], bin_dir, iris_store) == ["candidate", "production"]
    assert bash_complete(["maasctl", "alias", "set", "iris@"], bin_dir, iris_store) == ["candidate", "production",
                                                                                          "2", "1"]


@needs_bash
def test_bash_completes_serve_refs(bin_dir: Path, iris_store: Path) -> None:
    refs = ["iris", "iris@candidate", "iris@production", "iris@2", "iris@1"]
    assert bash_complete(["maasctl", "serve", "ir"], bin_dir, iris_store) == refs
    assert bash_complete(["maasctl", "serve", "iris@1", "h"], bin_dir, iris_store) == ["houses", "houses@1"]


@needs_bash
def test_bash_honours_store_option_and_environment(bin_dir: Path, iris_store: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    # --store on the command line wins over MAASCTL_HOME; a missing store completes to nothing, silently
    assert bash_complete(["maasctl", "--store", str(empty), "show", ""], bin_dir, iris_store) == []
    assert bash_complete(["maasctl", "--store", str(iris_store), "show", "h"], bin_dir, None) == ["houses", "houses@1"]
    assert bash_complete(["maasctl", "show", "iris@c"], bin_dir, iris_store) == ["candidate"]
    assert bash_complete(["maasctl", f"--store={iris_store}", "show", "h"], bin_dir, None) == ["houses", "houses@1"]


@needs_bash
def test_bash_register_completes_run_ids_and_files(bin_dir: Path, iris_store: Path, tmp_path: Path) -> None:
    (tmp_path / "export").mkdir()
    (tmp_path / "iris.maas").write_bytes(b"")
    assert bash_complete(["maasctl", "register", "2026"], bin_dir, iris_store, cwd=tmp_path) == [
        "20261123-120000-abc123"]
    assert bash_complete(["maasctl", "register", "ex"], bin_dir, iris_store, cwd=tmp_path) == ["export"]
    assert bash_complete(["maasctl", "register", "iris."], bin_dir, iris_store, cwd=tmp_path) == ["iris.maas"]
    assert sorted(bash_complete(["maasctl", "register", ""], bin_dir, iris_store, cwd=tmp_path)) == [
        "20261123-120000-abc123", "export", "iris.maas"]
    assert bash_complete(["maasctl", "register", "x", "--name", "i"], bin_dir, iris_store) == ["iris"]


@needs_bash
def test_bash_other_commands(bin_dir: Path, iris_store: Path, tmp_path: Path) -> None:
    (tmp_path / "houses.maas").write_bytes(b"")
    (tmp_path / "rows.csv").write_bytes(b"")
    run = "20261123-120000-abc123"
    assert bash_complete(["maasctl", "package", "2026"], bin_dir, iris_store, cwd=tmp_path) == [run]
    assert bash_complete(["maasctl", "package", "iris@c"], bin_dir, iris_store, cwd=tmp_path) == ["candidate"]
    assert bash_complete(["maasctl", "inspect", "h"], bin_dir, iris_store, cwd=tmp_path) == [
        "houses", "houses@1", "houses.maas"]
    assert bash_complete(["maasctl", "predict", "-m", "iris@p"], bin_dir, iris_store) == ["production"]
    assert bash_complete(["maasctl", "predict", "-i", "ro"], bin_dir, iris_store, cwd=tmp_path) == ["rows.csv"]
    assert bash_complete(["maasctl", "runs", "show", ""], bin_dir, iris_store) == [run]
    assert bash_complete(["maasctl", "train", "c.toml", "--name", "h"], bin_dir, iris_store) == ["houses"]
    assert bash_complete(["maasctl", "stop", ""], bin_dir, iris_store) == []  # no server running


@needs_bash
def test_bash_completes_choices_and_aliases_to_move(bin_dir: Path, iris_store: Path) -> None:
    assert bash_complete(["maasctl", "predict", "-f", ""], bin_dir, iris_store) == ["json", "jsonl", "csv", "table"]
    assert bash_complete(["maasctl", "serve", "iris", "--backend", ""], bin_dir, iris_store) == ["maasctl",
                                                                                                 "tfserving"]
    # alias set REF ALIAS: the model's existing aliases (to move one); REF's model, whatever REF's form
    assert bash_complete(["maasctl", "alias", "set", "iris@2", ""], bin_dir, iris_store) == ["candidate",
                                                                                              "production"]


def test_choice_and_alias_protocol(iris_store: Path) -> None:
    def values(words: str, cword: str) -> list[str]:
        return [line.split(",", 1)[1] for line in _protocol("bash", words, cword, iris_store).splitlines() if line]

    assert values("maasctl predict --format j", "3") == ["json", "jsonl"]
    assert values("maasctl predict --input-format c", "3") == ["csv"]
    assert values("maasctl serve iris --backend t", "4") == ["tfserving"]
    assert values("maasctl alias set iris@candidate p", "4") == ["production"]
    assert values("maasctl alias set iris ", "4") == ["candidate", "production"]
    assert values("maasctl alias set nosuch@1 ", "4") == []


# -- real interactive bash on a pseudo-terminal, pressing TAB ----------------------------------------
class InteractiveShell:
    """A shell on a pseudo-terminal: send keys, read the screen up to an expected string."""

    PROMPT = b"PROMPT$ "

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        env = {**env, "PS1": self.PROMPT.decode(), "TERM": "dumb", "INPUTRC": "/dev/null", "HISTFILE": "/dev/null"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            try:
                os.chdir(cwd)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.out = b""
        self.pos = 0

    def read_until(self, needle: bytes, timeout: float = 60) -> bytes:
        """Everything from the read cursor up to and including `needle`; advances the cursor past it."""
        deadline = time.monotonic() + timeout
        while (found := self.out.find(needle, self.pos)) < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {needle!r}; terminal shows {self.out[-400:]!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"bash exited; terminal shows {self.out[-400:]!r}")
                self.out += chunk
        seen, self.pos = self.out[self.pos:found + len(needle)], found + len(needle)
        return seen

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        try:
            self.send(b"\x15exit\n")
        except OSError:
            pass
        for _ in range(50):
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


@needs_bash
def test_interactive_bash_tab(bin_dir: Path, iris_store: Path) -> None:
    sh = InteractiveShell([BASH, "--norc", "--noprofile", "-i"], _env(bin_dir, iris_store), REPO)
    try:
        sh.read_until(sh.PROMPT)
        sh.send(f"source {COMPLETIONS / FILES['bash']}; echo sourced\n".encode())
        sh.read_until(b"sourced\r\n" + sh.PROMPT)
        sh.send(b"maasctl se\t")                       # one match: the line is completed in place
        sh.read_until(b"rve ")
        sh.send(b"ir\t")                               # common prefix of the iris refs: "iris"
        sh.read_until(b"is")
        sh.send(b"\t\t")                               # ambiguous: bash lists every candidate
        listing = sh.read_until(sh.PROMPT)       # the listing, then the prompt is redrawn
        for ref in (b"iris@1", b"iris@2", b"iris@candidate", b"iris@production"):
            assert ref in listing
        assert b"houses" not in listing
        sh.read_until(b"maasctl serve iris")
        sh.send(b"@p\t")                               # '@' is a word break for bash; the ref completes whole
        sh.read_until(b"roduction ")
        sh.send(b"\x15echo line-done\n")
        sh.read_until(b"line-done\r\n")
    finally:
        sh.close()


@pytest.mark.skipif(ZSH is None, reason="zsh is not installed")
def test_interactive_zsh_tab(bin_dir: Path, iris_store: Path, tmp_path: Path) -> None:
    (tmp_path / "export").mkdir()
    sh = InteractiveShell([ZSH, "-f", "-i"], _env(bin_dir, iris_store), tmp_path)
    try:
        sh.send(f"PS1='{sh.PROMPT.decode()}'; autoload -U compinit; compinit -u; "
                f"source {COMPLETIONS / FILES['zsh']}; echo sourced\n".encode())
        sh.read_until(b"sourced")
        sh.send(b"maasctl se\t")
        sh.read_until(b"maasctl serve ")
        sh.send(b"\x15maasctl show iris@p\t")
        sh.read_until(b"maasctl show iris@production")
        sh.send(b"\x15maasctl register ex\t")      # file names where the argument takes a path
        sh.read_until(b"maasctl register export/")
    finally:
        sh.close()


@pytest.mark.skipif(FISH is None, reason="fish is not installed")
def test_fish_completes(bin_dir: Path, iris_store: Path) -> None:
    script = (f"source {COMPLETIONS / FILES['fish']}\n"
              "complete -C 'maasctl se'; echo ---; complete -C 'maasctl show iris@'\n")
    proc = subprocess.run([FISH, "--no-config", "-c", script], capture_output=True, text=True, check=False,
                          env=_env(bin_dir, iris_store), cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    commands, refs = proc.stdout.split("---\n")
    assert [line.split("\t")[0] for line in commands.splitlines()] == ["serve"]
    assert "iris@production\talias -> version 1" in refs.splitlines()
    assert sorted(line.split("\t")[0] for line in refs.splitlines()) == [
        "iris@1", "iris@2", "iris@candidate", "iris@production"]


# -- the other shells' protocols, and the cost of a TAB ----------------------------------------------
def _protocol(shell: str, words: str, cword: str, store: Path) -> str:
    env = {"_MAASCTL_COMPLETE": f"complete_{shell}", "COMP_WORDS": words, "COMP_CWORD": cword}
    proc = cli(store=store, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_zsh_protocol_carries_help(iris_store: Path) -> None:
    out = _protocol("zsh", "maasctl show iris@", "2", iris_store).split("\n")
    triples = [tuple(out[i:i + 3]) for i in range(0, len(out) - 2, 3)]
    assert ("plain", r"iris@production", "alias -> version 1") in triples
    assert ("plain", "iris@2", "version") in triples
    assert {t[0] for t in triples} == {"plain"}


def test_fish_protocol(iris_store: Path) -> None:
    out = _protocol("fish", "maasctl show ir", "ir", iris_store).splitlines()
    assert out[0] == "plain,iris\tlatest (version 2)"
    assert "plain,iris@candidate\talias -> version 2" in out


def test_completion_never_imports_tensorflow(iris_store: Path) -> None:
    code = ("import os, sys\n"
            "from maasctl.cli import main\n"
            "try:\n    main([])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'uvicorn'))\n"
            "print('HEAVY', heavy, file=sys.stderr)\n")
    env = {**os.environ, "_MAASCTL_COMPLETE": "complete_bash", "COMP_WORDS": "maasctl show ir", "COMP_CWORD": "2",
           "MAASCTL_HOME": str(iris_store)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert "plain,iris@production" in proc.stdout.splitlines()
    assert "HEAVY []" in proc.stderr, proc.stderr


def test_broken_store_completes_to_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "index.db").write_bytes(b"this is not sqlite")
    proc = cli(store=bad, env={"_MAASCTL_COMPLETE": "complete_bash", "COMP_WORDS": "maasctl show ",
                                   "COMP_CWORD": "2"})
    assert proc.returncode == 0
    assert proc.stdout.strip() == ""
    assert proc.stderr == ""


# -- the callbacks themselves (in-process) -----------------------------------------------------------
def test_callbacks_for_package_predict_and_stop(iris_store: Path, monkeypatch, tmp_path: Path) -> None:
    from maasctl.cli import _complete as c

    monkeypatch.setenv("MAASCTL_HOME", str(iris_store))
    items = c.complete_run_or_ref(None, "")
    values = [v for v, _ in items]
    assert values[:2] == ["20261123-120000-abc123", "houses"] and "iris@production" in values
    assert getattr(values[-1], "kind", None) == "file"  # file names too, expanded by the shell
    assert [v for v, _ in c.complete_run_or_ref(None, "iris@c")] == ["iris@candidate", "iris@c"]
    assert [(v, getattr(v, "kind", None)) for v, _ in c.complete_file(None, "ex")] == [("ex", "file")]
    assert [v for v, _ in c.complete_ref_or_file(None, "h")] == ["houses", "houses@1", "h"]
    assert c.complete_run(None, "") == [("20261123-120000-abc123", "run")]
    assert c.complete_model(None, "i") == [("iris", "2 version(s), latest 2")]

    # a live detached-server record (a real process whose command line names maasctl) and a dead one
    servers = iris_store / "servers"
    servers.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "maasctl"])
    try:
        for sid, pid in (("5e5e0001", proc.pid), ("5e5e0002", 2 ** 22 + 1)):
            (servers / f"{sid}.json").write_text(json.dumps({
                "id": sid, "pid": pid, "url": "http://127.0.0.1:1", "models": ["iris"], "refs": ["iris@production"],
                "started_at": "2026-11-23T12:00:00Z", "log": ""}))
        assert c.complete_server(None, "5e") == [("5e5e0001", "http://127.0.0.1:1 iris@production")]
    finally:
        proc.kill()
        proc.wait()
        for f in servers.glob("*.json"):
            f.unlink()
