"""TensorFlow Serving's gRPC API (PredictionService + ModelService.GetModelStatus) with grpcio.

It serves the REST app's Manager, so both APIs share the models, versions, labels, digest checks, batch
queues and metrics. The server runs `grpc.aio` on its own thread and event loop; requests reach the same
Batcher as REST requests (it keeps one ready-list per event loop) and the model call happens once per batch.

Messages are TF Serving's own (`tensorflow-serving-api`); their modules import TensorFlow's protos, which
a server has loaded anyway. Tensors go through `tensor_proto.py` (`tensor_content`, no TensorFlow call).
With `--tls-cert/--tls-key` the port speaks TLS only, with REST's certificate and key; the bearer token
(metadata `authorization`) is checked against the REST app's token table and scopes.
Errors carry TF Serving's status codes: INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE (loading), UNAUTHENTICATED,
UNIMPLEMENTED, and RESOURCE_EXHAUSTED from grpcio itself for a message over the size limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from maasctl.errors import Conflict, InvalidInput, MaasError, NotFound, OperationFailed, Unavailable, Unimplemented
from maasctl.serving import codec, tensor_proto
from maasctl.serving.app import ServingApp, classify_regress
from maasctl.serving.auth import TokenTable
from maasctl.serving.manager import Servable
from maasctl.serving.tls import TlsFiles
from maasctl.tensors import DEFAULT_SIGNATURE

log = logging.getLogger("maasctl.serve")

DEFAULT_GRPC_PORT = 8500
_CODES: list[tuple[type, grpc.StatusCode]] = [
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT), (NotFound, grpc.StatusCode.NOT_FOUND),
    (Unavailable, grpc.StatusCode.UNAVAILABLE), (Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
]
_METHODS = {"tensorflow/serving/classify": "classify", "tensorflow/serving/regress": "regress"}


def status_code(exc: MaasError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def _protos() -> Any:
    """TF Serving's message modules. They import TensorFlow (its protos): the CLI has imported it quietly
    before (maasctl.tf.load_tensorflow), which this layer may not call."""
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        inference_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
        regression_pb2,
    )

    class P:  # a namespace
        pass

    for m in (classification_pb2, get_model_metadata_pb2, get_model_status_pb2, inference_pb2,
              model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc, regression_pb2):
        setattr(P, m.__name__.rsplit(".", 1)[1], m)
    return P


def _spec_ref(spec: Any) -> tuple[str, int | None, str | None]:
    if not spec.name:
        raise InvalidInput("model_spec.name is missing")
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label or None
    return spec.name, version, label


def _set_spec(out: Any, servable: Servable, signature: str = "") -> None:
    out.name = servable.name
    out.version.value = servable.version
    if signature:
        out.signature_name = signature


def _feature_value(feature: Any) -> Any:
    kind = feature.WhichOneof("kind")
    if kind is None:
        return []
    values = list(getattr(feature, kind).value)
    if kind == "bytes_list":
        values = [v.decode("utf-8", "replace") for v in values]
    return values[0] if len(values) == 1 else values


def _examples_doc(inp: Any, signature: str) -> dict[str, Any]:
    """tensorflow.serving.Input (tf.Examples, with or without context) -> the REST `examples` document."""
    kind = inp.WhichOneof("kind")
    if kind == "example_list":
        examples, context = inp.example_list.examples, None
    elif kind == "example_list_with_context":
        examples, context = inp.example_list_with_context.examples, inp.example_list_with_context.context
    else:
        raise InvalidInput("Input is empty: give example_list or example_list_with_context")
    doc: dict[str, Any] = {
        "examples": [{k: _feature_value(f) for k, f in ex.features.feature.items()} for ex in examples],
        "signature_name": signature or DEFAULT_SIGNATURE,
    }
    if context is not None:
        doc["context"] = {k: _feature_value(f) for k, f in context.features.feature.items()}
    return doc


def _rpc(api: str, handler: str) -> Callable[..., Awaitable[Any]]:
    """A servicer method (what grpcio calls) that runs `handler` through `_call` under the metrics label `api`."""
    async def method(self: _Servicer, request: Any, context: Any) -> Any:
        return await self._call(api, request, context, getattr(self, handler))

    method.__name__ = handler.lstrip("_")
    return method


class _Servicer:
    """PredictionService and ModelService, with every call wrapped by `_call` (auth, errors, metrics)."""

    def __init__(self, app: ServingApp, tokens: TokenTable | None) -> None:
        self.app = app
        self.manager = app.manager
        self.metrics = app.metrics
        self.tokens = tokens
        self.P = _protos()

    async def _call(self, api: str, request: Any, context: Any,
                    handler: Callable[[Any, list[str]], Awaitable[Any]]) -> Any:
        t0 = time.perf_counter()
        labels = ["", ""]
        spec = getattr(request, "model_spec", None)
        if spec is None and api == "grpc_multi_inference" and request.tasks:
            spec = request.tasks[0].model_spec
        if spec is not None:
            labels[0] = spec.name if self.manager.serves(spec.name) else "(unknown)"
        code, message = grpc.StatusCode.OK, ""
        try:
            if self.tokens is not None:
                self._authorize(context, "read" if api in _READ_APIS else "predict")
            return await handler(request, labels)
        except MaasError as exc:
            code, message = status_code(exc), str(exc)
        except Exception as exc:  # the crash boundary: log it, tell the client only that it happened
            log.exception("internal error in gRPC %s", api)
            code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__} (see the server log)"
        finally:
            if labels[0]:
                self.metrics.requests.inc(labels[0], labels[1], api, code.name)
                self.metrics.request_latency.observe(time.perf_counter() - t0, labels[0], api)
        await context.abort(code, message)

    def _authorize(self, context: Any, needed: str) -> None:
        """The REST API's token table and scopes: UNAUTHENTICATED without a valid bearer token,
        PERMISSION_DENIED when the token lacks the method's scope (`predict`, or `read` for metadata/status)."""
        assert self.tokens is not None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                raw = value.encode() if isinstance(value, str) else value
                scheme, _, credentials = raw.strip().partition(b" ")
                scopes = self.tokens.scopes_of(credentials.strip(b" ")) if scheme.lower() == b"bearer" else None
                if scopes is None:
                    raise _Unauthenticated("invalid bearer token")
                if needed not in scopes:
                    raise _PermissionDenied(f"this token lacks the '{needed}' scope")
                return
        raise _Unauthenticated("missing 'authorization: Bearer <token>' metadata (this server requires a token)")

    # -- PredictionService and ModelService: each RPC is `_call(api label, request, context, handler)` ----
    Predict = _rpc("grpc_predict", "_predict")
    Classify = _rpc("grpc_classify", "_classify")
    Regress = _rpc("grpc_regress", "_regress")
    MultiInference = _rpc("grpc_multi_inference", "_multi_inference")
    GetModelMetadata = _rpc("grpc_metadata", "_metadata")
    GetModelStatus = _rpc("grpc_status", "_status")
    HandleReloadConfigRequest = _rpc("grpc_reload_config", "_reload_config")

    async def _reload_config(self, request: Any, labels: list[str]) -> Any:
        raise Unimplemented("HandleReloadConfigRequest is not supported: maasctl follows the store "
                            "(move an alias or register a version to change what is served)")

    # -- handlers -------------------------------------------------------------------------------------
    def _acquire(self, spec: Any, labels: list[str]) -> Servable:
        name, version, label = _spec_ref(spec)
        servable = self.manager.acquire(name, version, label)
        labels[1] = str(servable.version)
        return servable

    async def _predict(self, request: Any, labels: list[str]) -> Any:
        servable = self._acquire(request.model_spec, labels)
        try:
            sig_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            specs = codec.signature(servable.signatures, sig_name, quote='"')["inputs"]
            given = set(request.inputs)
            if given != set(specs):
                missing, extra = sorted(set(specs) - given), sorted(given - set(specs))
                parts = ([f"missing input(s) {', '.join(missing)}"] if missing else []) + \
                        ([f"unknown input(s) {', '.join(extra)}"] if extra else [])
                raise InvalidInput(f"{'; '.join(parts)} (signature '{sig_name}' takes: {', '.join(specs)})")
            inputs = {}
            for name, spec in specs.items():
                proto = request.inputs[name]
                arr = tensor_proto.to_array(proto, f"inputs['{name}']")
                tensor_proto.check(arr, tensor_proto.ENUM_NAME[proto.dtype], name, spec)
                inputs[name] = arr
            wanted = list(request.output_filter)
            outputs = await servable.batcher(sig_name).submit(inputs, codec.batch_rows(inputs, specs))
            if wanted:
                unknown = [k for k in wanted if k not in outputs]
                if unknown:
                    raise InvalidInput(f"output tensor alias not found in signature: {', '.join(unknown)} "
                                       f"(outputs: {', '.join(outputs)})")
                outputs = {k: outputs[k] for k in wanted}
            response = self.P.predict_pb2.PredictResponse()
            _set_spec(response.model_spec, servable, sig_name)
            for key, value in outputs.items():
                tensor_proto.fill(response.outputs[key], value)
            return response
        finally:
            servable.release()

    async def _examples(self, verb: str, spec: Any, inp: Any, labels: list[str]) -> tuple[Servable, Any, Any]:
        servable = self._acquire(spec, labels)
        try:
            names, values = await classify_regress(verb, servable, _examples_doc(inp, spec.signature_name))
        finally:
            servable.release()
        return servable, names, values

    def _fill_classification(self, result: Any, names: list[str], scores: np.ndarray) -> None:
        for row in scores.tolist():
            classes = result.classifications.add().classes
            for label, score in zip(names, row):
                c = classes.add()
                c.label, c.score = label, score

    @staticmethod
    def _fill_regression(result: Any, values: np.ndarray) -> None:
        """TF Serving's Regression holds one float per example, and its regressor refuses any other output
        shape with exactly this INVALID_ARGUMENT (servables/tensorflow/regressor.cc); a model with several
        targets is served by Predict (REST's :regress gives such a model a list per example)."""
        if values.shape[1] != 1:
            raise InvalidInput("Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                               f"[{values.shape[0]},{values.shape[1]}]")
        for v in values[:, 0].tolist():
            result.regressions.add().value = v

    async def _classify(self, request: Any, labels: list[str]) -> Any:
        servable, names, scores = await self._examples("classify", request.model_spec, request.input, labels)
        response = self.P.classification_pb2.ClassificationResponse()
        _set_spec(response.model_spec, servable, request.model_spec.signature_name or DEFAULT_SIGNATURE)
        self._fill_classification(response.result, names, scores)
        return response

    async def _regress(self, request: Any, labels: list[str]) -> Any:
        servable, _, values = await self._examples("regress", request.model_spec, request.input, labels)
        response = self.P.regression_pb2.RegressionResponse()
        _set_spec(response.model_spec, servable, request.model_spec.signature_name or DEFAULT_SIGNATURE)
        self._fill_regression(response.result, values)
        return response

    async def _multi_inference(self, request: Any, labels: list[str]) -> Any:
        if not request.tasks:
            raise InvalidInput("MultiInferenceRequest has no tasks")
        names = {t.model_spec.name for t in request.tasks}
        if len(names) != 1:
            raise InvalidInput(f"all tasks of a MultiInference request must use one model (got {', '.join(sorted(names))})")
        response = self.P.inference_pb2.MultiInferenceResponse()
        for task in request.tasks:
            verb = _METHODS.get(task.method_name)
            if verb is None:
                raise Unimplemented(f"method '{task.method_name}' is not supported (use "
                                    f"{' or '.join(sorted(_METHODS))})")
            servable, class_names, values = await self._examples(verb, task.model_spec, request.input, labels)
            result = response.results.add()
            _set_spec(result.model_spec, servable, task.model_spec.signature_name or DEFAULT_SIGNATURE)
            if verb == "classify":
                self._fill_classification(result.classification_result, class_names, values)
            else:
                self._fill_regression(result.regression_result, values)
        return response

    async def _metadata(self, request: Any, labels: list[str]) -> Any:
        fields = list(request.metadata_field)
        if not fields:
            raise InvalidInput("GetModelMetadataRequest must specify at least one metadata_field")
        for f in fields:
            if f != "signature_def":
                raise InvalidInput(f"Metadata field {f} is not supported")
        servable = self._acquire(request.model_spec, labels)
        try:
            response = self.P.get_model_metadata_pb2.GetModelMetadataResponse()
            _set_spec(response.model_spec, servable)
            response.metadata["signature_def"].Pack(self._signature_defs(servable))
            return response
        finally:
            servable.release()

    def _signature_defs(self, servable: Servable) -> Any:
        """The SavedModel's own SignatureDefs (read once per servable from saved_model.pb)."""
        cached = getattr(servable, "_grpc_signature_defs", None)
        if cached is not None:
            return cached
        from maasctl.store.savedmodel import _fields, _map_entry

        # the raw SignatureDef messages of the `serve` meta graph (SavedModel field 2 = meta_graphs;
        # MetaGraphDef 1 = meta_info_def (tags: 4), 5 = signature_def map), parsed into TF Serving's map type
        path = Path(getattr(servable.model, "path", "")) / "saved_model.pb"
        graphs: list[tuple[list[str], dict[str, bytes]]] = []
        for field, _, value in _fields(path.read_bytes()):
            if field != 2:
                continue
            tags: list[str] = []
            raw: dict[str, bytes] = {}
            for f, _, v in _fields(value):
                if f == 1:
                    tags += [bytes(t).decode() for tf_, _, t in _fields(v) if tf_ == 4]
                elif f == 5:
                    key, sig = _map_entry(v)
                    raw[key] = sig
            graphs.append((tags, raw))
        chosen = next((g for g in graphs if "serve" in g[0]), graphs[0] if graphs else ([], {}))[1]
        out = self.P.get_model_metadata_pb2.SignatureDefMap()
        for name, sig in chosen.items():
            if name in servable.signatures:
                out.signature_def[name].ParseFromString(sig)
        servable._grpc_signature_defs = out  # type: ignore[attr-defined]
        return out

    async def _status(self, request: Any, labels: list[str]) -> Any:
        name, version, label = _spec_ref(request.model_spec)
        statuses = self.manager.status_of(name, version, label)
        response = self.P.get_model_status_pb2.GetModelStatusResponse()
        for v, st in sorted(statuses.items(), reverse=True):
            entry = response.model_version_status.add()
            entry.version = v
            entry.state = entry.State.Value(st.state)
            codes = entry.status.DESCRIPTOR.fields_by_name["error_code"].enum_type.values_by_name
            entry.status.error_code = codes[st.error_code].number if st.error_code in codes else codes["UNKNOWN"].number
            entry.status.error_message = st.error_message
        return response


class _Unauthenticated(MaasError):
    pass


class _PermissionDenied(MaasError):
    pass


_CODES[:0] = [(_Unauthenticated, grpc.StatusCode.UNAUTHENTICATED), (_PermissionDenied, grpc.StatusCode.PERMISSION_DENIED)]
_READ_APIS = frozenset({"grpc_metadata", "grpc_status", "grpc_reload_config"})


@contextlib.contextmanager
def _quiet_fd2() -> Any:
    """fd 2 to /dev/null for the duration (grpc's C core logs there, bypassing Python)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    """TF Serving's gRPC API for a ServingApp, on its own thread and event loop.

    `start()` binds (port 0: a free one; `.port`/`.address` tell which) and serves; `begin_stop()` stops
    accepting calls, `stop()` also waits for the calls in flight (up to `grace` seconds)."""

    def __init__(self, app: ServingApp, host: str = "127.0.0.1", port: int = DEFAULT_GRPC_PORT, *,
                 tokens: TokenTable | None = None, max_message_bytes: int | None = None,
                 reuse_port: bool = False, tls: TlsFiles | None = None) -> None:
        if not 0 <= port <= 65535:
            raise InvalidInput(f"--grpc-port must be between 0 and 65535 (got {port})")
        self.app = app
        self.host = host
        self.port = port
        # the REST app's tokens and scopes unless given (a single --token holds every scope)
        self.tokens = tokens if tokens is not None else getattr(app, "_tokens", None)
        self.max_message_bytes = max_message_bytes or app.max_body_bytes
        self.reuse_port = reuse_port
        self.tls = tls  # serve --tls-cert/--tls-key: the same certificate and key as REST, TLS only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._stopping: Any = None

    @property
    def address(self) -> str:
        return _address(self.host, self.port)

    def start(self, timeout: float = 60) -> GrpcServer:
        servicer = _Servicer(self.app, self.tokens)  # imports the protos here, not on the server's thread
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc", daemon=True)
        self._thread.start()
        try:
            self.port = asyncio.run_coroutine_threadsafe(self._start(servicer), self._loop).result(timeout)
        except BaseException:
            self._close_loop()
            raise
        return self

    async def _start(self, servicer: _Servicer) -> int:
        options = [("grpc.so_reuseport", 1 if self.reuse_port else 0),
                   ("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.max_send_message_length", -1)]
        server = grpc.aio.server(options=options)
        servicer.P.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
        servicer.P.model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
        try:
            with _quiet_fd2():  # grpc's C core logs a failed bind on fd 2; we say it in one line below
                if self.tls is not None:
                    credentials = grpc.ssl_server_credentials([(self.tls.key.read_bytes(), self.tls.cert.read_bytes())])
                    port = server.add_secure_port(_address(self.host, self.port), credentials)
                else:
                    port = server.add_insecure_port(_address(self.host, self.port))
        except RuntimeError:
            port = 0
        if port == 0:
            raise OperationFailed(f"cannot bind the gRPC port {self.address} (in use by another server?); choose "
                                  "another with --grpc-port, or --grpc-port 0 for a free one. See: maasctl ps")
        await server.start()
        self._server = server
        return port

    def begin_stop(self, grace: float = 30.0) -> None:
        """Stop accepting new calls; those in flight go on (up to `grace` seconds)."""
        if self._stopping is None and self._server is not None and self._loop is not None:
            self._stopping = asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop)

    def stop(self, grace: float = 30.0) -> None:
        self.begin_stop(grace)
        if self._stopping is not None:
            try:
                self._stopping.result(grace + 5)
            except Exception:
                log.exception("gRPC server stop")
        self._close_loop()

    def _close_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if not loop.is_running():
            loop.close()
