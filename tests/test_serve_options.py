"""`serve`'s defaults are declared once; the server record lives exactly as long as the server serves."""

from __future__ import annotations

import os

import pytest

from maasctl.serving import records
from maasctl.serving.defaults import BACKENDS, DEFAULT_MAX_BODY


def _serve_command():
    from maasctl.cli import command

    return command().commands["serve"]


def test_defaults_declared_once():
    import inspect

    from maasctl.serving.app import ServingApp
    from maasctl.serving.server import ServeOptions

    params = {p.name: p.default for p in _serve_command().params}
    assert params["max_body_bytes"] == DEFAULT_MAX_BODY == ServeOptions().max_body_bytes
    assert inspect.signature(ServingApp).parameters["max_body_bytes"].default == DEFAULT_MAX_BODY
    assert params["backend"] == BACKENDS[0]


def test_old_batch_size_name_is_a_hidden_alias():
    from maasctl.cli import command

    ctx = _serve_command().make_context("serve", ["m", "--batch-size", "9"], **command().context_settings)
    assert ctx.params["old_batch_size"] == 9


def test_record_published_while_serving_and_removed_on_error(store):
    with pytest.raises(RuntimeError), \
            records.published(store, "feed0001", url="http://127.0.0.1:1", models=["m"], refs=["m@1"]) as rec:
        assert rec is not None and rec.pid == os.getpid()
        assert records.record_path(store, "feed0001").is_file()
        raise RuntimeError("boom")
    assert not records.record_path(store, "feed0001").exists()
    with records.published(store, None, url="http://127.0.0.1:1", models=["m"], refs=["m"]) as rec:
        assert rec is None and not any(store.servers_dir.glob("*.json"))


def test_detached_argv_round_trips_through_the_real_parser(tmp_path):
    """Every option a detached child gets parses back to the same values: the argv is rendered in one place."""
    from pathlib import Path

    from maasctl.cli import command
    from maasctl.serving.launch import DetachedServe

    launch = DetachedServe(("iris@prod", "wine"), "feed0001", host="127.0.0.1", port=0, max_batch_size=7,
                           batch_timeout_ms=1.5, max_body_bytes=1234, backend="maasctl", grpc_port=0,
                           poll_seconds=2.0, token_file=tmp_path / "tokens", tls_cert=Path("/c.pem"),
                           tls_key=Path("/k.pem"), trusted_keys=(Path("/a.pub"), Path("/b.pub")), workers=3,
                           worker_dir=tmp_path / "w", debug=True)
    argv = launch.to_argv()
    root = command()
    root_ctx = root.make_context("maasctl", list(argv), **root.context_settings)
    assert root_ctx.params["debug"] is True
    rest_of_line = [*getattr(root_ctx, "_protected_args", []), *root_ctx.args]  # the command name, then its args
    name, cmd, rest = root.resolve_command(root_ctx, rest_of_line)
    params = cmd.make_context(name, rest, parent=root_ctx).params
    assert name == "serve" and params["refs"] == ["iris@prod", "wine"]
    assert (params["port"], params["batch_size"], params["batch_timeout_ms"], params["max_body_bytes"]) == (
        0, 7, 1.5, 1234)
    assert (params["grpc_port"], params["poll_seconds"], params["server_id"]) == (0, 2.0, "feed0001")
    assert params["token_file"] == (tmp_path / "tokens").resolve()
    assert (params["tls_cert"], params["tls_key"]) == (Path("/c.pem"), Path("/k.pem"))
    assert params["require_signed"] is True and params["key"] == [Path("/a.pub"), Path("/b.pub")]
    assert (params["workers"], params["worker_dir"]) == (3, tmp_path / "w")
    assert "--token" not in argv  # a token never travels in argv (the child gets it by environment)
