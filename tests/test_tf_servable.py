"""The Session-based servable matches tf.saved_model.load and falls back to it when it cannot load."""

from __future__ import annotations

import numpy as np
import pytest

from maasctl.errors import OperationFailed
from maasctl.tf.loader import LoadedModel, load_model
from maasctl.tf.servable import SessionModel, load_servable

pytestmark = pytest.mark.tf


def test_session_model_matches_the_eager_signature(models):
    x = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    fast, eager = load_servable(models["small"]), load_model(models["small"])
    assert isinstance(fast, SessionModel) and fast.signatures == eager.signatures
    assert "_direct_run" in fast._callables["serving_default"][2].__qualname__  # not the make_callable fallback
    np.testing.assert_allclose(fast.predict({"features": x})["output_0"], eager.predict({"features": x})["output_0"],
                               atol=1e-6)
    multi = load_servable(models["multi"])
    out = multi.predict({"a": np.array([[1, 2]], np.float32), "s": np.array([b"abc"], dtype=object)})
    assert out["sum"].tolist() == [8.0] and out["len"].tolist() == [3]
    fast.close()


def test_digest_problems_refuse_the_load(models):
    with pytest.raises(OperationFailed, match="refusing to load .*: variables/x is corrupt"):
        load_servable(models["small"], check=["variables/x is corrupt"])


def test_falls_back_to_the_eager_loader(models, tmp_path, monkeypatch):
    from maasctl.tf import servable

    def broken(path, check=None):
        raise RuntimeError("no session for you")

    monkeypatch.setattr(servable, "load_session_model", broken)
    assert isinstance(load_servable(models["small"]), LoadedModel)


@pytest.mark.parametrize("how", ["missing", "changed", "wrong"])
def test_when_the_private_session_hooks_break_the_public_path_serves(models, monkeypatch, how):
    """The seam into TensorFlow's internals: a TensorFlow whose private hooks are gone (setup raises), changed
    (calling raises) or misbehave (a different answer) costs speed, not correctness: the probe at load sees it
    once and the model is served through make_callable."""
    from maasctl.tf import servable

    real = servable._direct_run

    def broken(*args, **kwargs):
        if how == "missing":
            raise AttributeError("'Session' object has no attribute '_call_tf_sessionrun'")
        fn = real(*args, **kwargs)

        def call(*arrays):
            if how == "changed":
                raise TypeError("_call_tf_sessionrun() takes 7 positional arguments but 6 were given")
            return [np.zeros_like(a) for a in fn(*arrays)]

        return call

    monkeypatch.setattr(servable, "_direct_run", broken)
    model = load_servable(models["small"])
    assert isinstance(model, SessionModel)
    used = model._callables["serving_default"][2].__qualname__
    assert "_direct_run" not in used and "broken" not in used  # make_callable's, not the hook's
    x = np.random.default_rng(4).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict({"features": x})["output_0"],
                               load_model(models["small"]).predict({"features": x})["output_0"], atol=1e-6)
    model.close()
