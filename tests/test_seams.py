"""The guarded seams into third-party internals (issue 10 item 5): each is live with the versions we pin, and
each falls back to a public path when the internals it uses are gone. (TensorFlow's seam is tested in
tests/test_tf_servable.py, with the real-model tier.)"""

from __future__ import annotations

import tarfile

import pytest


# -- tarfile: TarInfo._proc_member -------------------------------------------------------------------------
def test_the_tarfile_hook_is_live():
    from maasctl.package import archive

    assert archive.PROC_MEMBER_HOOK
    assert "_proc_member" in vars(archive._GuardedTarInfo)
    assert callable(tarfile.TarInfo._proc_member)


# -- typer's vendored click ---------------------------------------------------------------------------------
def test_the_cli_catches_the_exceptions_typer_raises():
    from maasctl.cli import _click, app

    with pytest.raises(_click.exceptions.UsageError):
        app(args=["no-such-command"], prog_name="maasctl", standalone_mode=False)
    assert _click.COMPLETION_INTERNALS


def test_click_private_helpers_are_checked_by_name_and_parameters(monkeypatch):
    from maasctl.cli import _click

    assert _click._private("_resolve_context", ["cli", "ctx_args", "prog_name", "args"]) is not None
    monkeypatch.setattr(_click.shell_completion, "_resolve_context", lambda cli, args: None)
    assert _click._private("_resolve_context", ["cli", "ctx_args", "prog_name", "args"]) is None
    monkeypatch.delattr(_click.shell_completion, "_resolve_context")
    assert _click._private("_resolve_context", ["cli", "ctx_args", "prog_name", "args"]) is None


def _bash_completions(words: list[str], incomplete: str) -> list[tuple[str, str]]:
    import typer.main

    from maasctl.cli import app
    from maasctl.cli.completion import BashComplete

    complete = BashComplete(typer.main.get_command(app), {}, "maasctl", "_MAASCTL_COMPLETE")
    return [(item.value, item.type) for item in complete.get_completions(words, incomplete)]


def test_completion_without_click_internals_takes_the_public_path(monkeypatch):
    from maasctl.cli import completion

    assert _bash_completions(["alias"], "h") == [("history", "plain")]
    assert _bash_completions(["package", "x", "-o"], "") == [("", "file")]  # the path hint needs the internals
    monkeypatch.setattr(completion, "COMPLETION_INTERNALS", False)
    assert _bash_completions(["alias"], "h") == [("history", "plain")]
    assert _bash_completions(["package", "x", "-o"], "") == []


# -- uvicorn: HttpToolsProtocol and Server._captured_signals ---------------------------------------------
def test_the_uvicorn_internals_are_live():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from maasctl.serving import server

    protocol = server._http_protocol()
    assert isinstance(protocol, type) and issubclass(protocol, HttpToolsProtocol)
    assert isinstance(server._uvicorn_server(object())._captured_signals, list)  # type: ignore[arg-type]


def test_without_uvicorn_internals_the_public_httptools_protocol_is_used(monkeypatch):
    import uvicorn.protocols.http.httptools_impl as impl

    from maasctl.serving import server

    monkeypatch.delattr(impl, "HttpToolsProtocol")
    assert server._http_protocol() == "httptools"


def test_handle_exit_survives_a_uvicorn_without_captured_signals(monkeypatch):
    """A uvicorn that renamed the list: its own handle_exit no longer touches `_captured_signals`, nor may ours."""
    import signal

    import uvicorn

    from maasctl.serving import server

    def handle_exit(self, sig, frame):
        self.should_exit = True

    monkeypatch.setattr(uvicorn.Server, "handle_exit", handle_exit)
    srv = server._uvicorn_server(object())  # type: ignore[arg-type]
    del srv._captured_signals
    srv.handle_exit(signal.SIGTERM, None)
    assert srv.should_exit
