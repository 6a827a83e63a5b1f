"""`maasctl predict` as a library: pick where to send (a server or in-process), then stream input through it.

Target selection (`select_target`):

1. `--url URL`: that server. `--model` may be omitted only when the server lists exactly one model through
   maasctl's `/v1/models` extension (a plain TF Serving server has no such route: then --model is required).
2. `--local`: load `--model` in-process from the store.
3. Otherwise the running maasctl servers recorded in the store (`maasctl ps`): exactly one serving the model (or,
   without --model, exactly one running) is used (over gRPC when it serves gRPC: `serve --grpc-port`); several is
   an error listing them; none, with --model, loads the model in-process (and says so on stderr).
`--grpc HOST:PORT` sends to that server's TF Serving gRPC API (grpc_client.py).

Feature and class names come from the store: for a server, from the stored version with the same name and
version as the server reports, when its signature matches; otherwise records are taken in the file's order.
A server's model given as NAME or NAME@ALIAS is pinned to the version its metadata names (said on stderr), so a
version registered while a long input streams cannot mix two versions in one output.

Streaming (`run_predict`): chunks of --batch-size rows are encoded and checked, then scored with several
requests in flight, and written in input order. A regular file (or any JSON document, which is read whole) is
checked completely before anything is sent (encoded chunks are kept up to a memory budget, beyond which the
file is parsed again for sending), so a bad row anywhere means nothing was sent. CSV and JSON Lines on stdin or
another stream (a FIFO, a process substitution) are checked chunk by chunk: a bad chunk and everything after it
are not sent, earlier chunks were.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from maasctl.errors import InvalidInput, MaasError, NotFound
from maasctl.predict.encoding import Encoder
from maasctl.predict.inputs import InputSource
from maasctl.predict.schema import ModelSchema, schema_from_signature
from maasctl.predict.wire import predictions_doc, request_body, response_outputs
from maasctl.predict.writers import Writer
from maasctl.refs import ModelRef, parse_ref
from maasctl.serving.records import ServerRecord, list_servers
from maasctl.tensors import DEFAULT_SIGNATURE, loads, signature_from_metadata

if TYPE_CHECKING:
    from maasctl.store.base import ModelStore

T = TypeVar("T")
R = TypeVar("R")
CACHE_BUDGET = 64 << 20  # bytes of encoded input kept between the checking pass and the sending pass
REMOTE_WORKERS = 4


# -- targets ---------------------------------------------------------------------------------------------------
class Target:
    """Where predictions come from. `predict` is called from worker threads."""

    describe: str
    schema: ModelSchema
    model_name: str = ""  # the model's name and version, as far as known (a server may not name its version)
    model_version: int | None = None
    workers: int = 1
    notice: str = ""  # said (through `warn`) once the input is checked, just before the first request

    def predict(self, inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def predict_body(self, body: dict[str, Any], inputs: dict[str, np.ndarray], rows: int
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class RemoteTarget(Target):
    """A TF-Serving-compatible REST server."""

    def __init__(self, client: Any, ref: ModelRef, schema: ModelSchema, describe: str,
                 workers: int = REMOTE_WORKERS) -> None:
        self.client, self.ref, self.schema, self.describe, self.workers = client, ref, schema, describe, workers
        self._where = client.base_url + client.model_path(ref) + ":predict"

    pinned_from: str = ""  # the ref as given (latest or an alias) when `ref` was pinned to a version

    def predict(self, inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        try:
            raw = self.client.predict_raw(self.ref, request_body(self.schema, inputs))
        except NotFound as exc:
            raise self._gone(exc) from None
        return response_outputs(self.schema, loads(raw), rows, self._where)

    def predict_body(self, body: dict[str, Any], inputs: dict[str, np.ndarray], rows: int
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        try:
            doc = self.client.predict(self.ref, body)
        except NotFound as exc:
            raise self._gone(exc) from None
        return doc, response_outputs(self.schema, doc, rows, self._where)

    def _gone(self, exc: NotFound) -> NotFound:
        """The pinned version went away mid-run (the server moved to a newer one): say so, not just 404."""
        if not self.pinned_from:
            return exc
        return NotFound(f"{exc}; {self.ref} stopped being served during the run ({self.pinned_from} moved to a "
                        f"newer version?): the output is incomplete, rerun to predict with one version")

    def close(self) -> None:
        self.client.close()


class LocalTarget(Target):
    """A SavedModel loaded in this process (maasctl.tf.loader)."""

    def __init__(self, model: Any, schema: ModelSchema, describe: str) -> None:
        self.model, self.schema, self.describe = model, schema, describe
        self.workers = 2  # TensorFlow runs outside the GIL: overlap a call with encoding/writing

    def predict(self, inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        out = self.model.predict(inputs, self.schema.signature_name)
        return {n: out[n] for n in self.schema.outputs if n in out}

    def predict_body(self, body: dict[str, Any], inputs: dict[str, np.ndarray], rows: int
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        outputs = self.predict(inputs, rows)
        return predictions_doc(self.schema, outputs, columnar="inputs" in body), outputs


def _signatures_match(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def key(sig: dict[str, Any]) -> Any:
        return sorted((n, s["dtype"], tuple(s["shape"] or ())) for n, s in sig["inputs"].items())

    return key(a) == key(b)


def _store_meta(store: ModelStore | None, name: str, version: Any, sig: dict[str, Any], signature: str) -> dict[str, Any]:
    """Recorded meta of NAME@VERSION when the store has it with the same signature; else {}."""
    if store is None or version in (None, ""):
        return {}
    try:
        info = store.resolve(f"{name}@{int(version)}")
        stored = store.manifest(info).get("signatures", {}).get(signature)
    except (MaasError, ValueError, OSError):
        return {}
    return info.meta if stored and _signatures_match(stored, sig) else {}


def remote_target(url: str, model: str | None, *, signature: str = DEFAULT_SIGNATURE, token: str | None = None,
                  timeout: float = 60.0, store: ModelStore | None = None, retries: int | None = None,
                  via: str | None = None, workers: int = REMOTE_WORKERS, cacert: str | None = None) -> RemoteTarget:
    from maasctl.predict.client import DEFAULT_RETRIES, TFServingClient

    client = TFServingClient(url, token=token, timeout=timeout, cacert=cacert,
                             retries=DEFAULT_RETRIES if retries is None else retries)
    if model is None:
        names = client.list_models()
        if names is None:
            raise InvalidInput(f"--model is required: {client.base_url} does not list its models "
                               f"(TF Serving has no model-list route); pass --model NAME")
        if len(names) != 1:
            raise InvalidInput(f"--model is required: {client.base_url} serves "
                               f"{len(names)} models ({', '.join(names) or 'none'})")
        model = names[0]
    ref = parse_ref(model)
    doc = client.metadata(ref)
    where = client.base_url + client.model_path(ref) + "/metadata"
    sig = signature_from_metadata(doc, signature, where)
    version = (doc.get("model_spec") or {}).get("version")
    meta = _store_meta(store, ref.name, version, sig, signature)
    schema = schema_from_signature(sig, signature, meta)
    label = f"{ref.name}@{version}" if version else str(ref)
    notice = ""
    if ref.version is None and str(version or "").isdigit():
        # Pin every request to the version whose signature was just read: "latest" or an alias may move while
        # a long input streams (a new version registered mid-run), which would mix versions in one output.
        notice = f"{ref} is version {version} at {client.base_url}: all requests go to {label}"
        ref = ModelRef(ref.name, version=int(str(version)))
    target = RemoteTarget(client, ref, schema, f"{label} at {client.base_url}" + (f" ({via})" if via else ""),
                          workers=workers)
    target.notice = notice
    target.model_name = ref.name
    target.model_version = int(str(version)) if str(version or "").isdigit() else None
    target.pinned_from = str(parse_ref(model)) if notice else ""
    return target


LoadVersion = Callable[[Any, str], tuple[Any, Any]]
"""`(store, ref) -> (VersionInfo, loaded model)`: what --local loads with. The predict layer does not import
TensorFlow: the CLI passes `maasctl.tf.loader.load_version`."""


def local_target(store: ModelStore, model: str, *, load: LoadVersion, signature: str = DEFAULT_SIGNATURE) -> LocalTarget:
    info, loaded = load(store, model)
    if signature not in loaded.signatures:
        raise InvalidInput(f"{info.ref} has no signature '{signature}' (available: {', '.join(loaded.signatures)})")
    schema = schema_from_signature(loaded.signatures[signature], signature, info.meta)
    target = LocalTarget(loaded, schema, f"{info.ref} in-process from {store.location}")
    target.model_name, target.model_version = info.name, info.version
    return target


def live_servers(store: ModelStore) -> list[ServerRecord]:
    """Running maasctl servers recorded in the store (what `maasctl ps` lists)."""
    return list_servers(store)


def _server_lacks(rec: Any, name: str, version: int, *, token: str | None, timeout: float,
                  cacert: str | None = None) -> str:
    """Why server `rec` cannot answer for NAME@VERSION ("" when it serves that version now)."""
    from maasctl.predict.client import TFServingClient

    client = TFServingClient(rec.url, token=token, timeout=min(timeout, 10.0), retries=0, cacert=cacert)
    try:
        doc = client.status(name)
    except MaasError as exc:
        return f"could not be asked which versions of {name} it serves ({exc})"
    finally:
        client.close()
    available = sorted(int(v["version"]) for v in (doc or {}).get("model_version_status", [])
                       if isinstance(v, dict) and v.get("state") == "AVAILABLE" and str(v.get("version")).isdigit())
    if version in available:
        return ""
    have = ", ".join(f"{name}@{v}" for v in available) or f"no version of {name}"
    return f"does not serve {name}@{version} (it serves {have})"


def _uses_grpc(s: Any) -> bool:
    """Whether a recorded server is reached over gRPC: it serves gRPC too and grpcio is installed."""
    if not getattr(s, "grpc", None):
        return False
    from maasctl.predict.grpc_client import available

    return available()


def _server_address(s: Any) -> str:
    if _uses_grpc(s):
        return f"{'grpcs' if s.url.startswith('https://') else 'grpc'}://{s.grpc}"
    return s.url


def _server_target(s: Any, model: str, *, cacert: str | None = None, **kw: Any) -> Target:
    """A recorded server: over gRPC (binary tensors) when it serves gRPC, else REST."""
    if _uses_grpc(s):
        from maasctl.predict.grpc_client import grpc_target

        # over TLS when its REST port is (one certificate serves both)
        return grpc_target(s.grpc, model, via=f"server {s.id}", cacert=cacert, tls=s.url.startswith("https://"),
                           **kw)
    return remote_target(s.url, model, via=f"server {s.id}", cacert=cacert, **kw)


def select_target(store: ModelStore, *, model: str | None = None, url: str | None = None, local: bool = False,
                  signature: str = DEFAULT_SIGNATURE, token: str | None = None, timeout: float = 60.0,
                  say: Callable[[str], None] = lambda text: None, load: LoadVersion,
                  cacert: str | None = None, grpc: str | None = None) -> Target:
    """Decide where to predict (see the module docstring) and connect or load."""
    if url and local:
        raise InvalidInput("--url and --local exclude each other")
    if grpc:
        if url or local:
            raise InvalidInput(f"--grpc excludes {'--url' if url else '--local'}")
        from maasctl.predict.grpc_client import grpc_target

        return grpc_target(grpc, model, signature=signature, token=token, timeout=timeout, store=store,
                           cacert=cacert)
    if url:
        return remote_target(url, model, signature=signature, token=token, timeout=timeout, store=store,
                             cacert=cacert)
    if local:
        if not model:
            raise InvalidInput("--local needs --model NAME[@VERSION|@ALIAS] (the model to load from the store)")
        say(f"loading {store.resolve(model).ref} in-process from the store at {store.location}")
        return local_target(store, model, load=load, signature=signature)
    servers = live_servers(store)

    def listing(recs: Iterable[ServerRecord]) -> str:
        return "; ".join(f"{r.id} at {r.url} ({', '.join(r.refs or r.models)})" for r in recs)

    if model:
        # REF means what the store says it means (an alias or latest resolves here, NotFound says what exists);
        # a server is used only when it serves that very version, so `-m wine@1` never reaches a server that
        # serves only wine@2.
        info = store.resolve(model)
        pinned = f"{info.name}@{info.version}"
        shown = model if model == pinned else f"{model} (= {pinned})"
        serving = [s for s in servers if info.name in s.models]
        usable, reasons = [], []
        for s in serving:
            reason = _server_lacks(s, info.name, info.version, token=token, timeout=timeout, cacert=cacert)
            if reason:
                reasons.append(f"server {s.id} at {s.url} {reason}")
            else:
                usable.append(s)
        if len(usable) > 1:
            raise InvalidInput(f"{pinned} is served by {len(usable)} running servers: {listing(usable)}; "
                               f"pass --url URL to pick one, or --local")
        if usable:
            s = usable[0]
            say(f"predicting with {shown} on server {s.id} at {_server_address(s)}")
            return _server_target(s, pinned, signature=signature, token=token, timeout=timeout, store=store,
                                  cacert=cacert)
        if reasons:
            say(f"{'; '.join(reasons)}: loading {shown} in-process from the store at {store.location}")
        else:
            say(f"no running server serves '{info.name}': loading {shown} in-process from the store at "
                f"{store.location}")
        return local_target(store, pinned, load=load, signature=signature)
    if not servers:
        raise InvalidInput("no --model given and no maasctl server is running (see: maasctl ps); pass --model REF "
                           "to predict in-process, or --url URL")
    if len(servers) > 1:
        raise InvalidInput(f"{len(servers)} servers are running: {listing(servers)}; pass --model REF or --url URL")
    s = servers[0]
    if len(s.models) != 1:
        raise InvalidInput(f"server {s.id} at {s.url} serves {len(s.models)} models ({', '.join(s.models)}); "
                           f"pass --model NAME")
    return _server_target(s, s.models[0], signature=signature, token=token, timeout=timeout, store=store,
                          cacert=cacert)


# -- streaming -------------------------------------------------------------------------------------------------
def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """fn over items with up to `workers` calls in flight; results in input order, lazily (bounded memory)."""
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict")
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Encoded:
    inputs: dict[str, np.ndarray]
    rows: int
    consumed: int
    kept: dict[str, list[Any]] | None = None  # --keep columns of these rows, copied to the output


@dataclass
class PredictSummary:
    rows: int
    target: str
    checked_first: bool
    model: str = ""
    version: int | None = None

    def to_json(self, output: str | None, json_text: str | None = None) -> dict[str, Any]:
        """`predict --json`: model, version, rows, target, and output (a path) or predictions (json output)."""
        doc: dict[str, Any] = {"model": self.model, "version": self.version, "rows": self.rows,
                               "target": self.target, "output": output}
        if json_text is not None:
            body = loads(json_text) if json_text.strip() else {}
            doc["predictions"] = body.get("predictions", body.get("outputs")) if isinstance(body, dict) else body
        return doc


Progress = Callable[[str, int, int], None]  # (phase "check"/"predict", rows done, input chars consumed)


def _encoded(source: InputSource, encoder: Encoder, batch_size: int) -> Iterator[Encoded]:
    for chunk in source.chunks(batch_size):
        inputs = encoder.encode(chunk)
        kept = encoder.take_kept()
        rows = len(next(iter(inputs.values()))) if inputs else 0
        if rows:
            yield Encoded(inputs, rows, chunk.consumed, kept or None)


def _nbytes(e: Encoded) -> int:
    return sum(a.nbytes if a.dtype != object else a.size * 64 for a in e.inputs.values())


def _checked_first(source: InputSource, encoder: Encoder, batch_size: int, progress: Progress | None
                   ) -> Iterator[Encoded]:
    """Check the whole (rewindable) input before yielding anything; keep the encoded chunks if they fit."""
    cache: list[Encoded] | None = []
    size = rows = 0
    for e in _encoded(source, encoder, batch_size):
        rows += e.rows
        if progress:
            progress("check", rows, e.consumed)
        if cache is not None:
            cache.append(e)
            size += _nbytes(e)
            if size > CACHE_BUDGET:
                cache = None
    if cache is not None:
        yield from cache
        return
    source.rewind()
    if source.format == "csv":
        source.header()
    yield from _encoded(source, encoder, batch_size)


def _announced(chunks: Iterator[Encoded], notice: str, warn: Callable[[str], None]) -> Iterator[Encoded]:
    """`chunks`, saying `notice` when the first one is ready (after the checking pass, before any request)."""
    for i, e in enumerate(chunks):
        if i == 0:
            warn(notice)
        yield e


def run_predict(target: Target, source: InputSource, writer: Writer, *, batch_size: int = 1024,
                progress: Progress | None = None, warn: Callable[[str], None] = lambda text: None,
                check_first: bool = True, keep: list[str] | tuple[str, ...] = ()) -> PredictSummary:
    """Stream `source` through `target` into `writer`, in input order. An input without rows is InvalidInput.

    Input columns beyond the model's features: the recorded label column is ignored, `keep` columns are copied
    to the output (jsonl, csv, table), others are ignored with one warning."""
    if batch_size < 1:
        raise InvalidInput(f"--batch-size {batch_size}: must be at least 1")
    encoder = Encoder(target.schema, source.where, warn=warn, keep=keep)
    if source.body is not None:
        if keep:
            raise InvalidInput(f"{source.where}: --keep needs rows or records, not a TF Serving request body")
        inputs, rows = encoder.encode_body(source.body)
        if target.notice:
            warn(target.notice)
        doc, outputs = target.predict_body(source.body, inputs, rows)
        writer.write_body(doc, outputs)
        writer.close()
        return PredictSummary(rows, target.describe, True, target.model_name, target.model_version)
    if source.format == "csv":
        encoder.set_csv_header(source.header())
    first = check_first and source.rewindable
    chunks = _checked_first(source, encoder, batch_size, progress) if first else _encoded(source, encoder, batch_size)
    done = 0
    if target.notice:
        chunks = _announced(chunks, target.notice, warn)

    def call(e: Encoded) -> tuple[Encoded, dict[str, np.ndarray]]:
        return e, target.predict(e.inputs, e.rows)

    mapper = getattr(target, "map_ordered", None)  # a target with its own pipelining (gRPC futures)
    for e, outputs in (mapper(chunks) if mapper else ordered_map(call, chunks, target.workers)):
        writer.write(outputs, e.kept)
        done += e.rows
        if progress:
            progress("predict", done, e.consumed)
    if not done:  # nothing was sent; an empty "predictions" would hide an empty or truncated input
        what = "only a header line" if source.format == "csv" else "the input is empty"
        raise InvalidInput(f"no rows in {source.where} ({what}; nothing to predict)")
    writer.close()
    return PredictSummary(done, target.describe, first, target.model_name, target.model_version)


__all__ = ["LocalTarget", "PredictSummary", "RemoteTarget", "Target", "live_servers", "local_target",
           "ordered_map", "remote_target", "run_predict", "select_target"]
