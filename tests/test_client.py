"""The TF Serving REST client: retries, error mapping, tokens, keep-alive, ordered concurrency.

Real HTTP on 127.0.0.1 throughout: small stdlib servers with scripted behaviour for the network cases, and the
TF-Serving-protocol stub backed by a real SavedModel for the protocol cases.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from maasctl.errors import InvalidInput, NotFound, OperationFailed
from maasctl.predict.client import TFServingClient
from maasctl.predict.pipeline import ordered_map
from maasctl.refs import ModelRef


class Scripted:
    """A real HTTP/1.1 server answering from a list of (status, body); records peers and concurrency."""

    def __init__(self, answers: list[tuple[int, dict]], delay: float = 0.0,
                 sock: socket.socket | None = None) -> None:
        self.answers, self.delay = list(answers), delay
        self.peers: list[tuple[str, int]] = []
        self.paths: list[str] = []
        self.active = self.max_active = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    outer.peers.append(self.client_address)
                    outer.paths.append(self.path)
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                    status, doc = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                time.sleep(outer.delay)
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with lock:
                    outer.active -= 1

            do_GET = do_POST = _serve

            def log_message(self, *args) -> None:
                pass

        if sock is None:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        else:  # serve on a socket bound earlier (kept bound, so no one else can take its port meanwhile)
            self.httpd = ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
            self.httpd.socket.close()
            self.httpd.socket = sock
            self.httpd.server_address = sock.getsockname()
            self.httpd.server_activate()
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
              "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch):
    """The network cases must not depend on the proxy settings of the machine running the tests."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


def closed_port() -> socket.socket:
    """A socket bound to a 127.0.0.1 port but not listening: connecting is refused, and while the caller holds
    it no other process can take the port (unlike picking a free port and binding it later)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


def test_connection_refused_is_retried_then_names_the_url():
    with closed_port() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        client = TFServingClient(url, retries=2, backoff=0.01)
        with pytest.raises(OperationFailed) as exc:
            client.predict("m", {"instances": [1]})
    assert str(exc.value).startswith(f"cannot reach {url}: connection refused (3 attempts")


def test_a_server_that_comes_up_late_is_reached_by_retrying():
    """The server starts listening only after the client's first attempt was refused (observed through the real
    transport adapter, not a timer), so the test passes only by retrying, however loaded the machine is."""
    import requests

    sock = closed_port()
    refused = threading.Event()
    outcomes: list[str] = []

    class Observed(requests.adapters.HTTPAdapter):
        def send(self, *args, **kwargs):
            try:
                resp = super().send(*args, **kwargs)
            except requests.exceptions.ConnectionError:
                outcomes.append("refused")
                refused.set()
                raise
            outcomes.append(str(resp.status_code))
            return resp

    client = TFServingClient(f"127.0.0.1:{sock.getsockname()[1]}", retries=8, backoff=0.05)
    result: list[object] = []

    def call() -> None:
        client.session.mount("http://", Observed())  # sessions are per thread
        result.append(client.predict("m", {"instances": [1]}))

    caller = threading.Thread(target=call)
    caller.start()
    late = None
    try:
        assert refused.wait(60), "the client never tried"
        late = Scripted([(200, {"predictions": [1]})], sock=sock)  # listen on the port it was refused on
        caller.join(60)
        assert result == [{"predictions": [1]}], outcomes
        assert outcomes[0] == "refused" and outcomes[-1] == "200" and late.paths == ["/v1/models/m:predict"]
    finally:
        caller.join(60)
        if late is not None:
            late.stop()
        sock.close()


def test_loopback_servers_bypass_proxy_env_remote_urls_keep_it(monkeypatch):
    """http_proxy set for the internet must not send 127.0.0.1/localhost through the proxy (there it would be
    'connection refused' or someone else's server); a remote URL still goes through the proxy."""
    direct = Scripted([(200, {"direct": 1})])
    proxy = Scripted([(200, {"via": "proxy"})])
    try:
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        port = direct.url.rsplit(":", 1)[1]
        for url in (direct.url, f"localhost:{port}"):
            assert TFServingClient(url, retries=0).status("m") == {"direct": 1}
        assert proxy.paths == []
        assert TFServingClient("http://maasctl-test.invalid:8501", retries=0).status("m") == {"via": "proxy"}
        assert proxy.paths == ["http://maasctl-test.invalid:8501/v1/models/m"]
    finally:
        direct.stop()
        proxy.stop()


def test_timeouts_and_503_are_retried():
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(OperationFailed, match=r"timed out after 0.2 s \(2 attempts"):
            TFServingClient(url, timeout=0.2, retries=1, backoff=0.01).status("m")
    server = Scripted([(503, {"error": "loading"}), (503, {"error": "loading"}), (200, {"ok": 1})])
    try:
        assert TFServingClient(server.url, retries=3, backoff=0.01).status("m") == {"ok": 1}
        assert len(server.paths) == 3
    finally:
        server.stop()


def test_http_errors_carry_the_server_message():
    server = Scripted([(400, {"error": "Missing 'inputs' or 'instances' key"}), (404, {"error": "no such model"}),
                       (500, {"error": "boom"})])
    try:
        client = TFServingClient(server.url, retries=0)
        with pytest.raises(InvalidInput, match="HTTP 400: Missing 'inputs' or 'instances' key"):
            client.predict("m", {})
        with pytest.raises(NotFound, match="HTTP 404: no such model"):
            client.metadata("m")
        with pytest.raises(OperationFailed, match="HTTP 500: boom") as exc:
            client.status("m")
        assert exc.value.exit_code == 1
    finally:
        server.stop()


def test_routes_keep_alive_and_list_models():
    server = Scripted([(200, {"models": [{"name": "iris"}]})])
    try:
        client = TFServingClient(server.url)
        for _ in range(5):
            client.status(ModelRef("iris", version=3))
        client.metadata(ModelRef("iris", alias="stable"))
        client.predict(ModelRef("iris"), {"instances": []})
        assert client.list_models() == ["iris"]
        assert server.paths[:7] == ["/v1/models/iris/versions/3"] * 5 + ["/v1/models/iris/labels/stable/metadata",
                                                                        "/v1/models/iris:predict"]
        assert len({peer for peer in server.peers}) == 1  # one kept-alive connection
    finally:
        server.stop()


def test_ordered_map_keeps_order_with_requests_in_flight():
    server = Scripted([(200, {"ok": True})], delay=0.05)
    try:
        client = TFServingClient(server.url)

        def call(i: int) -> int:
            client.predict("m", {"instances": [i]})
            return i

        assert list(ordered_map(call, range(20), workers=4)) == list(range(20))
        assert server.max_active == 4
    finally:
        server.stop()


@pytest.mark.tf
def test_against_the_tf_serving_stub(models):
    from tfserving_stub_server import StubServer

    stub = StubServer(models["small"], "iris", version=2, token="s3cret").start()
    try:
        with pytest.raises(InvalidInput, match="HTTP 401.*pass --token"):
            TFServingClient(stub.url).status("iris")
        client = TFServingClient(stub.url, token="s3cret")
        status = client.status("iris")
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
        assert stub.last_headers["authorization"] == "Bearer s3cret"
        meta = client.metadata(ModelRef("iris", version=2))
        assert "serving_default" in meta["metadata"]["signature_def"]["signature_def"]
        out = client.predict("iris", {"instances": [[1.0, 2.0, 3.0, 4.0]]})
        assert len(out["predictions"][0]) == 3
        assert client.list_models() is None  # a plain TF Serving server has no model list
        with pytest.raises(NotFound, match=r"Specific\(iris, 9\)"):
            client.predict(ModelRef("iris", version=9), {"instances": [[1.0, 2.0, 3.0, 4.0]]})
    finally:
        stub.stop()
