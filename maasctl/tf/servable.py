"""A low-overhead way to call a SavedModel's signatures, for the server's hot path.

Calling a TF2 signature (`tf.saved_model.load(p).signatures[k](**tensors)`) costs ~200 us of Python and
eager-runtime overhead per call even for a tiny MLP, which caps a server at a few thousand calls/s. TF
Serving instead runs the same SignatureDef through a Session. This does the same from Python: the SavedModel
is imported into its own Graph + Session (the v1 loader restores variables and runs the init op), and each
signature becomes a `Session.make_callable` with ops run inline in the caller's thread (no inter-op
thread-pool hop). The graph and weights are the ones `tf.saved_model.load` uses, so outputs match it; the
GIL is released while the session runs.

If a SavedModel cannot be loaded this way, `load_servable` falls back to the eager `LoadedModel`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from maasctl.errors import InvalidInput, OperationFailed
from maasctl.savedmodel import Signature, read_signatures
from maasctl.tf import load_tensorflow
from maasctl.tf.loader import LoadedModel, load_model

log = logging.getLogger("maasctl.serve")


class SessionModel:
    """Same interface as LoadedModel: `.signatures`, `.path`, `.predict(inputs, signature)`."""

    def __init__(self, path: Path, signatures: dict[str, Signature], session: Any,
                 callables: dict[str, tuple[list[str], list[str], Callable[..., list[np.ndarray]]]]) -> None:
        self.path = path
        self.signatures = signatures
        self._session = session
        self._callables = callables

    def predict(self, inputs: dict[str, np.ndarray], signature: str = "serving_default") -> dict[str, np.ndarray]:
        try:
            in_names, out_names, fn = self._callables[signature]
        except KeyError:
            raise InvalidInput(f"unknown signature '{signature}' (available: {', '.join(self._callables)})") from None
        values = fn(*[inputs[n] for n in in_names])
        return dict(zip(out_names, values))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def load_session_model(path: str | Path, *, check: list[str] | None = None) -> SessionModel:
    path = Path(path)
    if check:
        raise OperationFailed(f"refusing to load {path}: {check[0]}" + (f" (+{len(check) - 1} more)" if len(check) > 1 else ""))
    signatures = read_signatures(path)
    tf = load_tensorflow()
    graph = tf.Graph()
    # inter-op -1: run ops inline in the calling thread; intra-op 0: TensorFlow's default (all cores)
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=-1, intra_op_parallelism_threads=0)
    session = tf.compat.v1.Session(graph=graph, config=config)
    try:
        with graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
        callables = {}
        for name in signatures:
            sig_def = meta_graph.signature_def[name]
            in_names, out_names = list(sig_def.inputs), list(sig_def.outputs)
            fn = session.make_callable([sig_def.outputs[k].name for k in out_names],
                                       feed_list=[sig_def.inputs[k].name for k in in_names])
            callables[name] = (in_names, out_names, fn)
    except Exception:
        session.close()
        raise
    return SessionModel(path, signatures, session, callables)


def load_servable(path: str | Path, *, check: list[str] | None = None) -> SessionModel | LoadedModel:
    """The fastest loader that works for this SavedModel (digest problems in `check` refuse the load)."""
    if check:
        return load_model(path, check=check)  # raises the refusal
    try:
        return load_session_model(path)
    except (OperationFailed, InvalidInput):
        raise
    except Exception as exc:  # an exotic SavedModel: the eager loader is the reference path
        log.warning("%s: session loading failed (%s: %s); using tf.saved_model.load", path, type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "")
        return load_model(path)
