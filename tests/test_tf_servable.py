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
    import maasctl.tf.servable as servable

    def broken(path, check=None):
        raise RuntimeError("no session for you")

    monkeypatch.setattr(servable, "load_session_model", broken)
    assert isinstance(load_servable(models["small"]), LoadedModel)
