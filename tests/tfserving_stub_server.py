"""A minimal TensorFlow Serving REST server for client tests: only the documented TF Serving routes.

Routes (see /work/shared/tf-serving-rest.md): GET /v1/models/{M}[/versions/{V}] (status),
GET /v1/models/{M}[/versions/{V}|/labels/{L}]/metadata, POST /v1/models/{M}[/versions/{V}|/labels/{L}]:predict
with `instances` or `inputs`. No maasctl extensions (no /v1/models list, no health routes).

Answers come from a REAL SavedModel loaded with maasctl.tf.loader, decoded from JSON here independently of
maasctl's client code. Every request is counted (`requests`, `predicts`) so tests can assert nothing was sent.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

_ROUTE = re.compile(r"^/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                    r"(?P<tail>/metadata|:predict)?$")
_NP = {"float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64, "bool": np.bool_}


class StubServer:
    """Serve one SavedModel as NAME, version VERSION, on 127.0.0.1 in a background thread."""

    def __init__(self, model_dir: Path, name: str, version: int = 1, labels: dict[str, int] | None = None,
                 token: str | None = None) -> None:
        from maasctl.tensors import tf_serving_metadata
        from maasctl.tf.loader import load_model

        self.model = load_model(model_dir)
        self.name, self.version, self.labels, self.token = name, version, labels or {}, token
        self.metadata = {k: tf_serving_metadata(v) for k, v in self.model.signatures.items()}
        self.requests = 0
        self.predicts = 0
        self.predicted_rows = 0
        self.paths: list[str] = []  # every request's path, in arrival order
        self.last_headers: dict[str, str] = {}
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- protocol ------------------------------------------------------------------------------------------
    def _resolve(self, model: str, version: str | None, label: str | None) -> tuple[int, dict[str, Any]] | int:
        if model != self.name:
            return 404, {"error": f"Servable not found for request: Latest({model})"}
        if version is not None:
            if not version.isdigit():
                return 400, {"error": f"Invalid version: {version}"}
            if int(version) != self.version:
                return 404, {"error": f"Servable not found for request: Specific({model}, {version})"}
        if label is not None and self.labels.get(label) != self.version:
            return 400, {"error": f"Unrecognized servable version label: {label}"}
        return 0

    def handle(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            self.requests += 1
            self.paths.append(path)
            self.last_headers = headers
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "missing or wrong bearer token"}
        m = _ROUTE.match(path)
        if not m:
            return 404, {"error": f"Malformed request: {method} {path}"}
        bad = self._resolve(m["model"], m["version"], m["label"])
        if bad:
            return bad
        tail = m["tail"]
        if method == "GET" and tail is None:
            return 200, {"model_version_status": [{"version": str(self.version), "state": "AVAILABLE",
                                                   "status": {"error_code": "OK", "error_message": ""}}]}
        if method == "GET" and tail == "/metadata":
            return 200, {"model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
                         "metadata": {"signature_def": {"signature_def": self.metadata}}}
        if method == "POST" and tail == ":predict":
            with self._lock:
                self.predicts += 1
            return self._predict(body)
        return 405, {"error": f"Unsupported method {method} for {path}"}

    def _predict(self, body: bytes) -> tuple[int, Any]:
        try:
            doc = json.loads(body)
        except ValueError as exc:
            return 400, {"error": f"JSON Parse error: {exc}"}
        if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
            return 400, {"error": "Missing 'inputs' or 'instances' key"}
        sig_name = doc.get("signature_name") or "serving_default"
        sig = self.model.signatures.get(sig_name)
        if sig is None:
            return 400, {"error": f"Serving signature name: \"{sig_name}\" not found in signature def"}
        names = list(sig["inputs"])
        try:
            if "instances" in doc:
                inst = doc["instances"]
                cols = ({names[0]: inst} if len(names) == 1 and not (inst and isinstance(inst[0], dict))
                        else {n: [row[n] for row in inst] for n in names})
            else:
                inp = doc["inputs"]
                cols = inp if isinstance(inp, dict) else {names[0]: inp}
            arrays = {n: _array(cols[n], sig["inputs"][n]["dtype"]) for n in names}
        except (KeyError, TypeError, ValueError) as exc:
            return 400, {"error": f"Failed to process element: {exc}"}
        outputs = self.model.predict(arrays, sig_name)
        with self._lock:
            self.predicted_rows += len(next(iter(arrays.values())))
        lists = {k: _jsonable(v, k) for k, v in sorted(outputs.items())}
        if "inputs" in doc:
            return 200, {"outputs": next(iter(lists.values())) if len(lists) == 1 else lists}
        if len(lists) == 1:
            return 200, {"predictions": next(iter(lists.values()))}
        keys = list(lists)
        return 200, {"predictions": [dict(zip(keys, vals)) for vals in zip(*lists.values())]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, doc = server.handle(method, self.path, body, {k.lower(): v for k, v in self.headers.items()})
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def _array(values: Any, dtype: str) -> np.ndarray:
    if dtype == "string":
        def dec(v: Any) -> Any:
            if isinstance(v, list):
                return [dec(x) for x in v]
            return base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode()
        return np.array(dec(values), dtype=object)
    if dtype.startswith("float"):
        def check(v: Any) -> None:
            if isinstance(v, list):
                for x in v:
                    check(x)
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"expected a number, got {v!r}")
        check(values)
    return np.array(values, dtype=_NP[dtype])


def _jsonable(arr: np.ndarray, name: str) -> Any:
    if arr.dtype == object:
        def enc(v: Any) -> Any:
            if isinstance(v, list):
                return [enc(x) for x in v]
            return {"b64": base64.b64encode(v).decode()} if name.endswith("_bytes") else v.decode()
        return enc(arr.tolist())
    return arr.tolist()
