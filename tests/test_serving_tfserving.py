"""`--backend tfserving`: the generated model config, parsed with TF Serving's own protos."""

from __future__ import annotations

import pytest

from conftest import run_cli
from maasctl.refs import parse_ref
from maasctl.serving.source import Aspired, aspired_for
from maasctl.serving.tfserving import model_config_text


def parse_config(text: str):
    text_format = pytest.importorskip("google.protobuf.text_format")
    pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    return text_format.Parse(text, pb2.ModelServerConfig())


def test_config_parses_with_the_real_protos(tmp_path):
    snap = {"iris": {"versions": [1, 2, 3], "aliases": {"stable": 2, "canary": 3}}}
    aspired = aspired_for([parse_ref("iris"), parse_ref("iris@1")], snap)  # latest 3 + alias targets + pinned 1
    aspired["odd"] = Aspired(frozenset({4}), {})
    cfg = parse_config(model_config_text(tmp_path / "models", aspired))
    configs = {c.name: c for c in cfg.model_config_list.config}
    assert set(configs) == {"iris", "odd"}
    iris = configs["iris"]
    assert iris.base_path == str(tmp_path / "models" / "iris")
    assert iris.model_platform == "tensorflow"
    assert sorted(iris.model_version_policy.specific.versions) == [1, 2, 3]
    assert dict(iris.version_labels) == {"stable": 2, "canary": 3}
    assert list(configs["odd"].model_version_policy.specific.versions) == [4]


def test_config_quotes_paths(tmp_path):
    weird = tmp_path / "it's a \\ dir"
    cfg = parse_config(model_config_text(weird, {"m": Aspired(frozenset({1}), {})}))
    assert cfg.model_config_list.config[0].base_path == str(weird / "m")


def test_missing_binary_exits_2_with_install_hint(tmp_path, models):
    from maasctl.store import Store

    store = Store(tmp_path / "store")
    store.register(models["small"], "small")
    for detach in ([], ["--detach"]):
        r = run_cli("serve", "small", "--backend", "tfserving", *detach, store=store.root,
                    env={"PATH": "/usr/bin:/bin"})
        assert r.returncode == 2
        assert "tensorflow_model_server is not on PATH" in r.stderr and "tensorflow/serving" in r.stderr
