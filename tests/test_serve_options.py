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
