"""A low-overhead way to call a SavedModel's signatures, for the server's hot path.

Calling a TF2 signature (`tf.saved_model.load(p).signatures[k](**tensors)`) costs ~200 us of Python and
eager-runtime overhead per call even for a tiny MLP, which caps a server at a few thousand calls/s. TF
Serving instead runs the same SignatureDef through a Session. This does the same from Python: the SavedModel
is imported into its own Graph + Session (the v1 loader restores variables and runs the init op), and each
signature becomes one direct session run over the SignatureDef's feed and fetch tensors, with ops run
inline in the caller's thread (no inter-op thread-pool hop). The graph and weights are the ones
`tf.saved_model.load` uses, so outputs match it; the GIL is released while the session runs.

`Session.make_callable` with feeds delegates to the generic `Session.run` (feed-dict processing and a
fetch handler per call, ~110 us); the direct path (`Session._call_tf_sessionrun` with the tensors'
TF_Outputs, what `Session.run` does at its core) costs ~25 us for a small MLP. It is private API, so it is
used only after a probe call at load went through it and agreed with make_callable, which is the fallback.

If a SavedModel cannot be loaded this way, `load_servable` falls back to the eager `LoadedModel`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maasctl.errors import InvalidInput, OperationFailed
from maasctl.refs import ModelRef
from maasctl.store.savedmodel import Signature, read_signatures
from maasctl.tensors import DEFAULT_SIGNATURE, numpy_twin
from maasctl.tf import load_tensorflow
from maasctl.tf.loader import LoadedModel, load_model

if TYPE_CHECKING:
    from maasctl.store.base import ModelStore

log = logging.getLogger("maasctl.serve")


class SessionModel:
    """Same interface as LoadedModel: `.signatures`, `.path`, `.predict(inputs, signature)`."""

    def __init__(self, path: Path, signatures: dict[str, Signature], session: Any,
                 callables: dict[str, tuple[list[str], list[str], Callable[..., list[np.ndarray]]]]) -> None:
        self.path = path
        self.signatures = signatures
        self._session = session
        self._callables = callables

    def predict(self, inputs: dict[str, np.ndarray], signature: str = DEFAULT_SIGNATURE) -> dict[str, np.ndarray]:
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


# -- the seam into TensorFlow's internals ------------------------------------------------------------------
# `Session._call_tf_sessionrun`, `Session._extend_graph` and `Tensor._as_tf_output` are private (TensorFlow has
# an upper version bound in pyproject.toml). They are used only here, and only after one probe call at load
# has run through them and returned what the public `make_callable` path returns; any exception, at setup or
# in the probe, means the public path is used for this model.
def _direct_run(session: Any, graph: Any, sig_def: Any, in_names: list[str], out_names: list[str],
                sig: Signature) -> Callable[..., list[np.ndarray]] | None:
    """A session run straight on the feed/fetch TF_Outputs, or None when this TensorFlow lacks the private
    hooks or an input dtype has no NumPy twin (then make_callable is used)."""
    dtypes = [numpy_twin(sig["inputs"][k]["dtype"]) for k in in_names]
    if any(d is None for d in dtypes):
        return None
    feeds = [graph.as_graph_element(sig_def.inputs[k].name)._as_tf_output() for k in in_names]
    fetches = [graph.as_graph_element(sig_def.outputs[k].name)._as_tf_output() for k in out_names]
    run = session._call_tf_sessionrun
    session._extend_graph()

    def call(*arrays: np.ndarray) -> list[np.ndarray]:
        feed = {t: np.asarray(a, dtype=d) for t, a, d in zip(feeds, arrays, dtypes)}
        return run(None, feed, fetches, [], None)

    return call


def _probe_inputs(sig: Signature, in_names: list[str]) -> list[np.ndarray] | None:
    """One row of zeros (empty strings, False) per input, or None when an input's shape is not known."""
    arrays = []
    for k in in_names:
        spec = sig["inputs"][k]
        shape, dtype = spec["shape"], numpy_twin(spec["dtype"])
        if shape is None or dtype is None:
            return None
        fill = {"string": b"", "bool": False}.get(spec["dtype"], 0)
        arrays.append(np.full([1 if d < 0 else d for d in shape], fill, dtype=dtype))
    return arrays


def _checked_direct_run(session: Any, graph: Any, sig_def: Any, in_names: list[str], out_names: list[str],
                        sig: Signature, public: Callable[..., list[np.ndarray]]) -> Callable[..., list[np.ndarray]]:
    """The direct path when one probe call through it matches the public path's answer; else the public path."""
    probe = _probe_inputs(sig, in_names)
    if probe is None:
        return public
    try:
        direct = _direct_run(session, graph, sig_def, in_names, out_names, sig)
        if direct is None:
            return public
        got = direct(*probe)
    except Exception as exc:  # noqa: BLE001 - TensorFlow's internals moved, or the model rejects zeros
        log.debug("direct session run unavailable (%s: %s); using make_callable", type(exc).__name__, exc)
        return public
    try:
        want = public(*probe)
    except Exception:  # noqa: BLE001 - the model rejects zeros: the probe says nothing, trust the public path
        return public
    if len(got) != len(want) or not all(_same(g, w) for g, w in zip(got, want)):
        log.warning("direct session run disagrees with make_callable on a probe; using make_callable")
        return public
    return direct


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f" and b.dtype.kind == "f"))


def load_session_model(path: str | Path, *, check: list[str] | None = None) -> SessionModel:
    path = Path(path)
    if check:
        more = f" (+{len(check) - 1} more)" if len(check) > 1 else ""
        raise OperationFailed(f"refusing to load {path}: {check[0]}{more}")
    signatures = read_signatures(path)
    tf = load_tensorflow()
    graph = tf.Graph()
    # inter-op -1: run ops inline in the calling thread; intra-op 0: TensorFlow's default (all cores)
    intra = int(os.environ.get("MAASCTL_INTRA_OP_THREADS", "0"))
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=-1, intra_op_parallelism_threads=intra)
    session = tf.compat.v1.Session(graph=graph, config=config)
    try:
        with graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
        callables = {}
        for name in signatures:
            sig_def = meta_graph.signature_def[name]
            in_names, out_names = list(sig_def.inputs), list(sig_def.outputs)
            public = session.make_callable([sig_def.outputs[k].name for k in out_names],
                                           feed_list=[sig_def.inputs[k].name for k in in_names])
            fn = _checked_direct_run(session, graph, sig_def, in_names, out_names, signatures[name], public)
            callables[name] = (in_names, out_names, fn)
    except Exception:
        session.close()
        raise
    return SessionModel(path, signatures, session, callables)


def store_loader(store: ModelStore) -> Callable[[str, int], tuple[Any, dict[str, Any]]]:
    """The serving Manager's loader: resolve `name@version` in the store, check its digests, load the fastest
    way (see serving.manager.Loader)."""

    def load(name: str, version: int) -> tuple[Any, dict[str, Any]]:
        info = store.resolve(ModelRef(name, version=version))
        store.prefetch(info)  # a remote version downloads while TensorFlow imports (cold start)
        load_tensorflow()
        with store.open_version(info) as path:  # digests checked (a remote version is fetched into the cache)
            model = load_servable(path)
        return model, dict(info.meta)

    return load


def load_servable(path: str | Path, *, check: list[str] | None = None) -> SessionModel | LoadedModel:
    """The fastest loader that works for this SavedModel (digest problems in `check` refuse the load)."""
    if check:
        return load_model(path, check=check)  # raises the refusal
    try:
        return load_session_model(path)
    except (OperationFailed, InvalidInput):
        raise
    except Exception as exc:  # noqa: BLE001 - an exotic SavedModel: the eager loader is the reference path
        log.warning("%s: session loading failed (%s: %s); using tf.saved_model.load", path, type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "")
        return load_model(path)
