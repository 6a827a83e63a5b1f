"""Transient S3 errors, for real: a small HTTP proxy on 127.0.0.1 in front of moto's server forwards every
request but answers `503 SlowDown` to the first K requests of one kind. botocore's retries (the store's
client: "standard" mode, 3 attempts) must carry push and list through; when the faults outlast the retries,
the command fails in one line, exit 1, and the store is unchanged. With read-only credentials (403 on the
index write-back), `list` still works."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from conftest import run_cli
from test_registry_backends import bucket_of, snapshot

pytestmark = pytest.mark.tf  # real SavedModels (the `models` fixture)
ERROR = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
         "<Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>")


class FaultProxy:
    """Forwards to `upstream`; `fail(match, k)` makes the next k requests for which match(method, path) holds
    get a 503 SlowDown (or `status`/`code`) instead (k = -1: all of them)."""

    def __init__(self, upstream: str) -> None:
        up = urlsplit(upstream)
        self.lock = threading.Lock()
        self.rules: list[list] = []
        self.injected = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy._fault(self.command, self.path)
                if fault is not None:
                    status, code = fault
                    error = ERROR.format(code=code).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(error)
                    return
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                    r = conn.getresponse()
                    data = r.read()
                finally:
                    conn.close()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail(self, match: Callable[[str, str], bool], k: int, status: int = 503, code: str = "SlowDown") -> None:
        with self.lock:
            self.rules = [[match, k, status, code]]
            self.injected = 0

    def _fault(self, method: str, path: str) -> tuple[int, str] | None:
        with self.lock:
            for rule in self.rules:
                if rule[1] != 0 and rule[0](method, path):
                    rule[1] -= 1
                    self.injected += 1
                    return rule[2], rule[3]
        return None


@pytest.fixture(scope="module")
def proxy(s3_endpoint) -> Iterator[FaultProxy]:
    p = FaultProxy(s3_endpoint)
    yield p
    p.server.shutdown()


def _puts_under(part: str) -> Callable[[str, str], bool]:
    return lambda method, path: method == "PUT" and f"/{part}/" in path


def _lists(method: str, path: str) -> bool:
    return method == "GET" and "list-type=2" in path


def test_503s_are_retried_and_exhausted_retries_fail_cleanly(s3_store_url, proxy, models, tmp_path):
    local = tmp_path / "local"
    assert run_cli("register", str(models["small"]), "--name", "iris", store=local).returncode == 0
    env = {"AWS_ENDPOINT_URL": proxy.url}

    # two 503s on the uploads, then two on the listings: within botocore's 3 attempts per request
    proxy.fail(_puts_under("models"), 2)
    r = run_cli("--store", str(local), "push", "iris@1", "--to", s3_store_url, "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert proxy.injected == 2
    proxy.fail(_lists, 2)
    r = run_cli("--store", s3_store_url, "list", "iris", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert proxy.injected == 2 and '"ref": "iris@1"' in r.stdout

    # every upload refused: the retries run out; one line, exit 1, the bucket as it was
    before = snapshot(s3_store_url)
    proxy.fail(_puts_under("models"), -1)
    r = run_cli("--store", s3_store_url, "register", str(models["small_b"]), "--name", "iris", env=env)
    injected = proxy.injected
    proxy.fail(_lists, 0)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("Error: S3 error while uploading "), r.stderr
    assert r.stderr.endswith("SlowDown (gave up after 3 attempts)\n")
    assert "Traceback" not in r.stderr and injected >= 3
    assert snapshot(s3_store_url) == before

    proxy.fail(_lists, -1)
    r = run_cli("--store", s3_store_url, "list", "iris", env=env)
    proxy.fail(_lists, 0)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("Error: S3 error while listing ") and "(gave up after 3 attempts)" in r.stderr

    # read-only credentials: list cannot write back the index it repairs, and still lists
    import boto3

    bucket, prefix = bucket_of(s3_store_url)
    boto3.client("s3").delete_object(Bucket=bucket, Key=f"{prefix}_maas/iris/index.json")
    proxy.fail(lambda method, path: method == "PUT" and "index.json" in path, -1, 403, "AccessDenied")
    r = run_cli("--store", s3_store_url, "list", "iris", "--json", env=env)
    assert r.returncode == 0 and '"ref": "iris@1"' in r.stdout, r.stderr
    assert proxy.injected == 1
