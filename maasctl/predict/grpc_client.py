"""`maasctl predict` over TF Serving's gRPC API: binary tensors (`tensor_content`) instead of JSON.

Messages are encoded by `grpc_wire` (no TensorFlow); grpcio carries them as raw bytes. One channel (HTTP/2)
multiplexes the requests that `run_predict` keeps in flight; results are written in input order by the
pipeline. UNAVAILABLE and DEADLINE_EXCEEDED are retried with backoff like the REST client (Predict is
idempotent); other status codes map to maasctl's errors (NOT_FOUND -> exit 3, INVALID_ARGUMENT -> exit 2).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from ipaddress import ip_address
from pathlib import Path
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
    # grpc's C core logs handshake failures to stderr at INFO; the client says what failed in one line itself
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
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
    """HOST:PORT (a `grpcs://` or `grpc://` prefix is taken off: TLS is chosen by `GrpcClient`)."""
    for scheme in ("grpcs://", "grpc://"):
        address = address.removeprefix(scheme)
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--grpc {address!r}: expected HOST:PORT, e.g. 127.0.0.1:8500")
    return address


def _speaks_tls(address: str, timeout: float = 2.0) -> bool:
    """Whether the server at HOST:PORT completes a TLS handshake (certificate not checked: this only explains
    why a plaintext call failed, nothing is sent over it)."""
    import socket
    import ssl

    host, _, port = address.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=None):
            return True
    except (OSError, ValueError):
        return False


class GrpcClient:
    """Raw-bytes unary calls to one server, with retries and error mapping.

    TLS when `cacert` is given (the server is verified against exactly that CA file) or `tls` is set or the
    address starts with `grpcs://` (verified against the system's CAs); plaintext otherwise."""

    def __init__(self, address: str, *, token: str | None = None, timeout: float = 60.0,
                 retries: int = DEFAULT_RETRIES, backoff: float = BACKOFF, cacert: str | None = None,
                 tls: bool = False) -> None:
        if not available():
            raise InvalidInput("--grpc needs grpcio: pip install 'maasctl[grpc]'")
        import grpc

        self.tls = tls or cacert is not None or address.startswith("grpcs://")
        self.cacert = cacert
        self.address = address = check_address(address)
        self.timeout, self.retries, self.backoff = timeout, max(0, retries), backoff
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        if _loopback(address):  # a server on this machine is reached directly, never through http_proxy
            options.append(("grpc.enable_http_proxy", 0))
        if self.tls:
            from maasctl.predict.client import _checked_cacert

            roots = Path(_checked_cacert(cacert)).read_bytes() if cacert else None  # None: the system's CAs
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(roots), options=options)
        else:
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
                if not self._retryable(exc, attempt):
                    break
        raise self._error(method, last, time.monotonic() - start)

    def _retryable(self, exc: Any, attempt: int) -> bool:
        """UNAVAILABLE and DEADLINE_EXCEEDED, but not a TLS mismatch (retrying cannot fix a certificate)."""
        import grpc

        code, details = exc.code(), (exc.details() or "").lower()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return True
        if code != grpc.StatusCode.UNAVAILABLE:
            return False
        if self.tls:
            return "ssl" not in details and "handshake" not in details
        return attempt > 0 or not _speaks_tls(self.address)

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
        if code == grpc.StatusCode.UNAVAILABLE and self.tls and ("ssl" in details.lower() or "handshake" in details.lower()):
            hint = "" if self.cacert else " (pass --cacert FILE for a private CA)"
            return OperationFailed(f"TLS with grpcs://{self.address} failed: {_tls_detail(details)}{hint}")
        if code == grpc.StatusCode.UNAVAILABLE and not self.tls and _speaks_tls(self.address):
            return OperationFailed(f"{self.address} serves gRPC over TLS and this call was plaintext: pass "
                                   "--cacert FILE (the CA of its certificate), or grpcs://HOST:PORT")
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
            if not self._retryable(exc, 0):
                raise self._error(method, exc, 0.0) from None
        return self.call(method, body)

    def close(self) -> None:
        self._channel.close()


def _tls_detail(details: str) -> str:
    """The telling part of grpc's handshake error (e.g. CERTIFICATE_VERIFY_FAILED), not its address prefix."""
    for marker in ("CERTIFICATE_VERIFY_FAILED", "Ssl handshake failed", "handshake"):
        i = details.find(marker)
        if i >= 0:
            details = details[i:]
            break
    return details.removesuffix(": OK")[:160]


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
                retries: int | None = None, cacert: str | None = None, tls: bool = False) -> GrpcTarget:
    if not model:
        raise InvalidInput(f"--model is required with --grpc {address} (TF Serving's gRPC API cannot list models)")
    client = GrpcClient(address, token=token, timeout=timeout, cacert=cacert, tls=tls,
                        retries=DEFAULT_RETRIES if retries is None else retries)
    address = client.address
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
        scheme = "grpcs" if client.tls else "grpc"
        target = GrpcTarget(client, ref, schema, f"{label} at {scheme}://{address}" + (f" ({via})" if via else ""))
    except BaseException:
        client.close()
        raise
    target.notice = notice
    target.pinned_from = str(parse_ref(model)) if notice else ""
    target.model_name = ref.name
    target.model_version = int(version) if version else None
    return target
