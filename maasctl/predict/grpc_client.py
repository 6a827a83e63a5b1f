"""`maasctl predict` over TF Serving's gRPC API: binary tensors (`tensor_content`) instead of JSON.

Messages are encoded by `grpc_wire` (no TensorFlow); grpcio carries them as raw bytes. One channel (HTTP/2)
multiplexes the requests that `run_predict` keeps in flight; results are written in input order by the
pipeline. UNAVAILABLE and DEADLINE_EXCEEDED are retried with backoff like the REST client (Predict is
idempotent); other status codes map to maasctl's errors (NOT_FOUND -> exit 3, INVALID_ARGUMENT -> exit 2).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from ipaddress import ip_address
from typing import Any

import numpy as np

from maasctl.errors import InvalidInput, MaasError, NotFound, OperationFailed, Unavailable
from maasctl.predict import grpc_wire
from maasctl.predict.pipeline import Target, _store_meta
from maasctl.predict.schema import ModelSchema, schema_from_signature
from maasctl.predict.wire import predictions_doc
from maasctl.refs import ModelRef, parse_ref

GRPC_WORKERS = 8
DEFAULT_RETRIES = 4
BACKOFF = 0.2


def available() -> bool:
    """Whether grpcio is installed (the `grpc` extra)."""
    try:
        import grpc  # noqa: F401
    except ImportError:
        return False
    return True


def _loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--grpc {address!r}: expected HOST:PORT, e.g. 127.0.0.1:8500")
    return address


class GrpcClient:
    """Raw-bytes unary calls to one server, with retries and error mapping."""

    def __init__(self, address: str, *, token: str | None = None, timeout: float = 60.0,
                 retries: int = DEFAULT_RETRIES, backoff: float = BACKOFF) -> None:
        if not available():
            raise InvalidInput("--grpc needs grpcio: pip install 'maasctl[grpc]'")
        import grpc

        self.address = check_address(address)
        self.timeout, self.retries, self.backoff = timeout, max(0, retries), backoff
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        if _loopback(address):  # a server on this machine is reached directly, never through http_proxy
            options.append(("grpc.enable_http_proxy", 0))
        self._channel = grpc.insecure_channel(address, options=options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._methods: dict[str, Any] = {}
        self._lock = threading.Lock()

    def call(self, method: str, body: bytes) -> bytes:
        import grpc

        fn = self._methods.get(method)
        if fn is None:
            with self._lock:
                fn = self._methods.setdefault(method, self._channel.unary_unary(method))
        start = time.monotonic()
        last: Any = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                return fn(body, timeout=self.timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                last = exc
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    break
        raise self._error(method, last, time.monotonic() - start)

    def _error(self, method: str, exc: Any, waited: float) -> MaasError:
        import grpc

        code, details = exc.code(), (exc.details() or "no message").splitlines()[0]
        where = f"{self.address} {method.rsplit('/', 1)[-1]}"
        msg = f"{where} answered {code.name}: {details}"
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFound(msg)
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return InvalidInput(msg + " (pass --token or set MAASCTL_TOKEN)")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return InvalidInput(msg + " (send smaller requests: lower --batch-size)")
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.OUT_OF_RANGE):
            return InvalidInput(msg)
        tries = f"{self.retries + 1} attempts over {waited:.1f} s"
        if code == grpc.StatusCode.UNAVAILABLE:
            if "connect" in details.lower() or "unreachable" in details.lower():
                return OperationFailed(f"cannot reach {self.address}: {details} ({tries})")
            return Unavailable(f"{msg} ({tries})")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return OperationFailed(f"{where}: timed out after {self.timeout:g} s ({tries})")
        return OperationFailed(msg)

    def submit(self, method: str, body: bytes) -> Any:
        """Start a call without a thread of ours (grpcio's future); `result(fut, ...)` waits for it."""
        fn = self._methods.get(method)
        if fn is None:
            with self._lock:
                fn = self._methods.setdefault(method, self._channel.unary_unary(method))
        return fn.future(body, timeout=self.timeout, metadata=self._metadata)

    def result(self, future: Any, method: str, body: bytes) -> bytes:
        """The answer of a submitted call; a retryable failure is retried with `call` (backoff)."""
        import grpc

        try:
            return future.result()
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise self._error(method, exc, 0.0) from None
        return self.call(method, body)

    def close(self) -> None:
        self._channel.close()


class GrpcTarget(Target):
    """A server speaking TF Serving's gRPC API (maasctl serve --grpc-port, or tensorflow_model_server)."""

    def __init__(self, client: GrpcClient, ref: ModelRef, schema: ModelSchema, describe: str,
                 workers: int = GRPC_WORKERS) -> None:
        self.client, self.ref, self.schema, self.describe, self.workers = client, ref, schema, describe, workers
        self._dtypes = {n: s["dtype"] for n, s in schema.inputs.items()}

    pinned_from: str = ""

    def predict(self, inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        body = self._body(inputs)
        return self._outputs(self._guard(lambda: self.client.call(grpc_wire.PREDICT, body)), rows)

    def map_ordered(self, chunks: Iterable[Any]) -> Iterator[tuple[Any, dict[str, np.ndarray]]]:
        """(chunk, outputs) for chunks with `.inputs`/`.rows`, up to `workers` calls in flight, in input order.

        grpcio's futures carry the calls, so no thread of ours waits on one (fewer GIL hand-offs than a pool)."""
        pending: deque[tuple[Any, bytes, Any]] = deque()
        try:
            for chunk in chunks:
                body = self._body(chunk.inputs)
                pending.append((chunk, body, self.client.submit(grpc_wire.PREDICT, body)))
                if len(pending) >= self.workers:
                    yield self._finish(*pending.popleft())
            while pending:
                yield self._finish(*pending.popleft())
        finally:
            for _, _, fut in pending:
                fut.cancel()

    def _finish(self, chunk: Any, body: bytes, fut: Any) -> tuple[Any, dict[str, np.ndarray]]:
        raw = self._guard(lambda: self.client.result(fut, grpc_wire.PREDICT, body))
        return chunk, self._outputs(raw, chunk.rows)

    def _body(self, inputs: dict[str, np.ndarray]) -> bytes:
        return grpc_wire.predict_request(self.ref, self.schema.signature_name, inputs, self._dtypes)

    def _guard(self, fn: Any) -> bytes:
        try:
            return fn()
        except NotFound as exc:
            if self.pinned_from:
                raise NotFound(f"{exc}; {self.ref} stopped being served during the run ({self.pinned_from} "
                               f"moved to a newer version?): the output is incomplete, rerun") from None
            raise

    def _outputs(self, raw: bytes, rows: int) -> dict[str, np.ndarray]:
        outputs, _ = grpc_wire.predict_response(raw)
        result = {}
        for name in self.schema.outputs:
            arr = outputs.get(name)
            if arr is None:
                raise OperationFailed(f"{self.client.address}: the response lacks output '{name}'")
            if arr.ndim == 0 or arr.shape[0] != rows:
                raise OperationFailed(f"{self.client.address}: output '{name}' has shape {list(arr.shape)}, "
                                      f"expected {rows} rows")
            result[name] = arr
        return result

    def predict_body(self, body: dict[str, Any], inputs: dict[str, np.ndarray], rows: int
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        outputs = self.predict(inputs, rows)
        return predictions_doc(self.schema, outputs, columnar="inputs" in body), outputs

    def close(self) -> None:
        self.client.close()


def grpc_target(address: str, model: str | None, *, signature: str = "serving_default", token: str | None = None,
                timeout: float = 60.0, store: Any = None, via: str | None = None,
                retries: int | None = None) -> GrpcTarget:
    if not model:
        raise InvalidInput(f"--model is required with --grpc {address} (TF Serving's gRPC API cannot list models)")
    client = GrpcClient(address, token=token, timeout=timeout,
                        retries=DEFAULT_RETRIES if retries is None else retries)
    try:
        ref = parse_ref(model)
        sigs, spec = grpc_wire.metadata_response(client.call(grpc_wire.METADATA, grpc_wire.metadata_request(ref)))
        if signature not in sigs:
            raise InvalidInput(f"{address}: model '{ref.name}' has no signature '{signature}' "
                               f"(available: {', '.join(sorted(sigs)) or 'none'})")
        sig = sigs[signature]
        version = spec.get("version")
        schema = schema_from_signature(sig, signature, _store_meta(store, ref.name, version, sig, signature))
        label = f"{ref.name}@{version}" if version else str(ref)
        notice = ""
        if ref.version is None and version:
            # pin every request to the version whose signature was just read (see pipeline.remote_target)
            notice = f"{ref} is version {version} at {address}: all requests go to {label} (gRPC)"
            ref = ModelRef(ref.name, version=int(version))
        target = GrpcTarget(client, ref, schema, f"{label} at grpc://{address}" + (f" ({via})" if via else ""))
    except BaseException:
        client.close()
        raise
    target.notice = notice
    target.pinned_from = str(parse_ref(model)) if notice else ""
    target.model_name = ref.name
    target.model_version = int(version) if version else None
    return target
