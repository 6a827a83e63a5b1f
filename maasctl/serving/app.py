"""The REST API as a plain ASGI callable: TF Serving's routes plus /v1/models, /healthz, /readyz, metrics.

No web framework: routing is a few string operations, which keeps the per-request overhead at the level of
the HTTP parser. Every error is `{"error": "..."}` with TF Serving's status code; no traceback ever reaches
a client (unexpected exceptions are logged and answered with 500).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from maasctl import tensors
from maasctl.errors import InvalidInput, MaasError, NotFound, Unimplemented
from maasctl.serving import codec, offload
from maasctl.serving.auth import TokenTable
from maasctl.serving.defaults import DEFAULT_MAX_BODY
from maasctl.serving.manager import Manager, Servable
from maasctl.serving.metrics import Metrics

log = logging.getLogger("maasctl.serve")

OFFLOAD_BODY_BYTES = 256 * 1024  # bodies above this are decoded (and answered) off the event loop
SEND_CHUNK_BYTES = 1024 * 1024  # answers above this leave in chunks of it
_JSON = [(b"content-type", b"application/json")]
_PREFIX = "/v1/models/"


class HttpError(MaasError):
    """An HTTP-level refusal (401, 405, 413) with its own status."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.http_status = status
        self.headers = headers or []


class _Disconnected(Exception):
    pass


class ServingApp:
    def __init__(self, manager: Manager, metrics: Metrics | None = None, *,
                 max_body_bytes: int = DEFAULT_MAX_BODY, token: str | None = None,
                 tokens: TokenTable | None = None) -> None:
        self.manager = manager
        self.metrics = metrics or Metrics(manager.loaded_counts)
        if self.metrics.loaded is None:
            self.metrics.loaded = manager.loaded_counts
        self.max_body_bytes = max_body_bytes
        # scoped tokens (serving/auth.py); a single token holds every scope
        self._tokens = tokens if tokens is not None else (TokenTable.single(token) if token else None)
        self._started = False
        # headers on every response (serve --workers: x-maasctl-worker: PID, so a client can tell who answered)
        self.response_headers: list[tuple[bytes, bytes]] = []

    def start(self) -> None:
        """Start loading models (idempotent; the lifespan startup calls it too)."""
        if not self._started:
            self._started = True
            self.manager.start()

    # -- ASGI ------------------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                self.manager.stop()
                offload.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        t0 = time.perf_counter()
        labels = ["", "", "other"]  # model, version, api: filled in by the handler
        extra_headers: list[tuple[bytes, bytes]] = []
        content_type = _JSON
        try:
            if self._tokens is not None:
                self._tokens.check(scope)  # 401 without a valid token, 403 without the route's scope
            status, body, content_type = await self._route(scope, receive, labels)
        except MaasError as exc:
            status = exc.http_status
            body = tensors.error_body(str(exc))
            extra_headers = getattr(exc, "headers", [])
        except _Disconnected:
            return
        except Exception as exc:  # the crash boundary: log it, tell the client only that it happened
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            status = 500
            body = tensors.error_body(f"internal error: {type(exc).__name__} (see the server log)")
        await send({"type": "http.response.start", "status": status,
                    "headers": [*content_type, (b"content-length", str(len(body)).encode()), *extra_headers,
                                *self.response_headers]})
        if len(body) <= SEND_CHUNK_BYTES:
            await send({"type": "http.response.body", "body": body})
        else:  # one 30 MB write held the event loop; in chunks, flow control lets /healthz in between
            for i in range(0, len(body), SEND_CHUNK_BYTES):
                await send({"type": "http.response.body", "body": body[i:i + SEND_CHUNK_BYTES],
                            "more_body": i + SEND_CHUNK_BYTES < len(body)})
                await asyncio.sleep(0)  # the transport writes now; a full socket buffer then pauses the next send
        model, version, api = labels
        if model:
            self.metrics.requests.inc(model, version, api, str(status))
            self.metrics.request_latency.observe(time.perf_counter() - t0, model, api)

    # -- routing ---------------------------------------------------------------------------------------
    async def _route(self, scope: dict[str, Any], receive: Any, labels: list[str]
                     ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(_PREFIX):
            rest = path[len(_PREFIX):]
            verb = None
            if ":" in rest:
                rest, _, verb = rest.rpartition(":")
            name, version, label, tail = self._parse_model_path(rest, path)
            labels[0] = name if self.manager.serves(name) else "(unknown)"  # bounded label cardinality
            if verb is not None:
                if tail:
                    raise NotFound(f"no route {path}")
                if verb not in ("predict", "classify", "regress"):
                    raise NotFound(f"unknown method ':{verb}' in {path} (use :predict, :classify or :regress)")
                labels[2] = verb
                _require(method, "POST", path)
                body = await self._read_body(scope, receive)
                return 200, await self._infer(verb, name, version, label, body, labels), _JSON
            if tail == ["metadata"]:
                labels[2] = "metadata"
                _require(method, "GET", path)
                return 200, self._metadata(name, version, label, labels), _JSON
            if tail:
                raise NotFound(f"no route {path} (see /v1/models/{name}[/versions/V|/labels/L][/metadata|:predict])")
            labels[2] = "status"
            _require(method, "GET", path)
            return 200, self._status(name, version, label), _JSON
        if path == "/healthz":
            return 200, b'{"status":"ok"}', _JSON
        if path == "/readyz":
            ready, problems, failed = self.manager.readiness()
            if not ready:
                # settled: no version is still loading, so the failures are the whole story of this start
                return 503, tensors.dumps({"error": "not ready: " + "; ".join(problems), "failed": failed,
                                           "settled": self.manager.settled()}), _JSON
            # ready: every served ref answers; a newer version may still be loading or have been refused
            # (the old one serves meanwhile), which the body says as TF Serving's status routes do
            return 200, tensors.dumps({"ready": True, "models": self.manager.names, "pending": problems,
                                       "failed": failed}), _JSON
        if path in ("/v1/models", "/v1/models/"):
            _require(method, "GET", path)
            return 200, self._list(), _JSON
        if path == "/monitoring/prometheus/metrics":
            return 200, self.metrics.render(), [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
        raise NotFound(f"no route {path} (TF Serving routes live under /v1/models/)")

    @staticmethod
    def _parse_model_path(rest: str, path: str) -> tuple[str, int | None, str | None, list[str]]:
        parts = [p for p in rest.split("/")]
        if parts and parts[-1] == "":
            parts.pop()
        if not parts or not parts[0]:
            raise NotFound(f"no route {path}: a model name is missing")
        name, version, label, i = parts[0], None, None, 1
        if len(parts) >= 2 and parts[1] in ("versions", "labels"):
            if len(parts) < 3 or not parts[2]:
                raise NotFound(f"no route {path}: {parts[1]} needs a value")
            if parts[1] == "versions":
                text = parts[2]
                # ASCII only: str.isdigit() also accepts '²' and other digits int() refuses; int64 like TF Serving
                if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 19 \
                        or int(text) >= 2**63:
                    raise InvalidInput(f"version must be a positive integer below 2^63, got '{text[:40]}' in {path[:200]}")
                version = int(text)
            else:
                label = parts[2]
            i = 3
        return name, version, label, parts[i:]

    async def _read_body(self, scope: dict[str, Any], receive: Any) -> bytes:
        limit = self.max_body_bytes
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    raise InvalidInput("invalid Content-Length header") from None
                if declared > limit:
                    raise HttpError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes "
                                         "(raise it with --max-body-bytes)")
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _Disconnected
        body = msg.get("body", b"")
        if not msg.get("more_body"):
            if len(body) > limit:
                raise _too_large(limit)
            return body
        chunks, total = [body], len(body)
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise _Disconnected
            chunk = msg.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not msg.get("more_body"):
                return b"".join(chunks)

    # -- handlers --------------------------------------------------------------------------------------
    async def _infer(self, verb: str, name: str, version: int | None, label: str | None, body: bytes,
                     labels: list[str]) -> bytes:
        # A large body is decoded and its answer encoded in a helper process (offload.py), so the event loop
        # keeps answering /healthz and small requests meanwhile; small ones stay inline, where a hop would cost
        # more than the work.
        big = len(body) > OFFLOAD_BODY_BYTES
        doc = None if big else tensors.loads(body)
        servable = self.manager.acquire(name, version, label)
        labels[1] = str(servable.version)
        try:
            if verb == "predict":
                if big:
                    req = await offload.run(offload.decode_predict, body, servable.signatures)
                else:
                    req = codec.nested_ok(codec.parse_predict, doc, servable.signatures)
                outputs = await servable.batcher(req.signature_name).submit(req.inputs, req.rows)
                if big:
                    return await offload.run(offload.encode_predict, outputs, req.row_format)
                return tensors.encode_predict(outputs, req.row_format)
            if not big:
                return codec.results_body(*await classify_regress(verb, servable, doc))
            check_task(verb, servable)  # as :predict: examples -> arrays, and scores -> JSON, in the helper
            sig_name, inputs, rows = await offload.run(offload.decode_examples, body, servable.signatures,
                                                       codec.examples_meta(servable.meta))
            outputs = await servable.batcher(sig_name).submit(inputs, rows)
            return await offload.run(codec.results_body, *codec.scores(verb, sig_name, outputs, servable.meta))
        finally:
            servable.release()

    def _metadata(self, name: str, version: int | None, label: str | None, labels: list[str]) -> bytes:
        servable = self.manager.acquire(name, version, label)
        try:
            labels[1] = str(servable.version)
            sigs = {k: tensors.tf_serving_metadata(v) for k, v in servable.signatures.items()}
            return tensors.dumps({"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                                "metadata": {"signature_def": {"signature_def": sigs}}})
        finally:
            servable.release()

    def _status(self, name: str, version: int | None, label: str | None) -> bytes:
        statuses = self.manager.status_of(name, version, label)
        return tensors.dumps({"model_version_status": [s.to_json(v) for v, s in sorted(statuses.items(), reverse=True)]})

    def _list(self) -> bytes:
        snap = self.manager.snapshot
        models = []
        for name in self.manager.names:
            st = self.manager.status(name)
            models.append({
                "name": name,
                "default_version": str(snap.latest[name]) if name in snap.latest else None,
                "labels": {a: str(v) for a, v in sorted(snap.labels.get(name, {}).items())},
                "model_version_status": [s.to_json(v) for v, s in sorted(st.items(), reverse=True)],
            })
        return tensors.dumps({"models": models})


def _too_large(limit: int) -> HttpError:
    return HttpError(413, f"request body exceeds the limit of {limit} bytes (raise it with --max-body-bytes)")


def _require(method: str, expected: str, path: str) -> None:
    if method != expected and not (expected == "GET" and method == "HEAD"):
        raise HttpError(405, f"method {method} not allowed on {path}; use {expected}",
                        [(b"allow", expected.encode())])


def check_task(verb: str, servable: Servable) -> None:
    """classify needs a maasctl classification model, regress a regression one."""
    task = str(servable.meta.get("task") or "")
    wanted = "classif" if verb == "classify" else "regress"
    if not task.lower().startswith(wanted):
        recorded = f"task '{task}'" if task else "no task"
        raise Unimplemented(f"{verb} is not available for model '{servable.name}' version {servable.version}: "
                            f"maasctl recorded {recorded} for it ({verb} needs a maasctl "
                            f"{'classification' if verb == 'classify' else 'regression'} model); use :predict")


async def classify_regress(verb: str, servable: Servable, doc: Any) -> tuple[list[str] | None, np.ndarray]:
    """Run TF Serving's classify/regress on examples (REST and gRPC share it).

    Returns (class names, scores [n, classes]) for classify and (None, values [n, targets]) for regress."""
    check_task(verb, servable)
    sig_name, inputs, rows = codec.nested_ok(codec.parse_examples, doc, servable.signatures,
                                             codec.examples_meta(servable.meta))
    outputs = await servable.batcher(sig_name).submit(inputs, rows)
    return codec.scores(verb, sig_name, outputs, servable.meta)
