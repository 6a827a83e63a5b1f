"""A client for TensorFlow Serving's REST API (works against maasctl serve and the real server). No TensorFlow.

Only the documented TF Serving routes are required: status, metadata and `:predict`. maasctl's `/v1/models`
extension is used (optionally) to find the model when a server serves exactly one.

Every thread gets its own keep-alive `requests.Session`, so several predict calls can be in flight at once.
Connection failures, timeouts and 503s are retried with exponential backoff (predict is idempotent); after the
last attempt the error names the URL. HTTP errors carry the server's `error` message: 404 -> NotFound,
other 4xx -> InvalidInput (exit 2), 5xx -> OperationFailed (exit 1).
"""

from __future__ import annotations

import json
import threading
import time
from ipaddress import ip_address
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from maasctl.errors import InvalidInput, NotFound, OperationFailed, Unavailable
from maasctl.refs import ModelRef
from maasctl.tensors import loads

DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 4  # attempts after the first: waits of 0.2, 0.4, 0.8, 1.6 s
BACKOFF = 0.2


class TFServingClient:
    """Talks to one server at `base_url` (e.g. http://127.0.0.1:8501)."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, backoff: float = BACKOFF, cacert: str | None = None) -> None:
        url = base_url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            if "://" in url:
                raise InvalidInput(f"--url {base_url}: only http:// and https:// URLs are supported")
            url = "http://" + url
        self.base_url = url
        # Proxy variables (http_proxy, ...) are for reaching the outside: a server on this machine is always
        # reached directly, else a proxy set for the internet makes 127.0.0.1 "connection refused".
        # (Per request, so the environment's CA bundle settings still apply: a None entry masks the env proxy.)
        self._proxies = ({"http": None, "https": None, "all": None} if _is_loopback(urlsplit(url).hostname or "")
                         else None)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        # https:// is verified against the system's CA store, or only against --cacert FILE when given
        self._verify: bool | str = _checked_cacert(cacert) if cacert else True
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers.update(self._headers)
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def close(self) -> None:
        with self._lock:
            for s in self._sessions:
                s.close()
            self._sessions.clear()

    @staticmethod
    def model_path(ref: ModelRef | str) -> str:
        """`/v1/models/NAME[/versions/V|/labels/L]` for a ref (latest when neither is given)."""
        if isinstance(ref, str):
            ref = ModelRef(ref)
        path = f"/v1/models/{quote(ref.name, safe='')}"
        if ref.version is not None:
            path += f"/versions/{ref.version}"
        elif ref.alias is not None:
            path += f"/labels/{quote(ref.alias, safe='')}"
        return path

    def request(self, method: str, path: str, *, data: bytes | None = None, retry: bool = True,
                expect_json: bool = True) -> Any:
        """One call with retries on connection errors/timeouts/503; returns the decoded JSON body."""
        url = self.base_url + path
        attempts = (self.retries if retry else 0) + 1
        start = time.monotonic()
        last = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                # verify per request: a session-level value loses to REQUESTS_CA_BUNDLE (requests#3829); a None
                # proxy value turns that scheme's proxy off (requests drops it when merging with the environment)
                proxies: Any = dict(self._proxies) if self._proxies else None
                resp = self.session.request(method, url, data=data, timeout=self.timeout, verify=self._verify,
                                            proxies=proxies)
            except requests.exceptions.SSLError as exc:  # retrying cannot fix a certificate
                raise OperationFailed(f"TLS with {self.base_url} failed: {_tls_reason(exc)}"
                                      + ("" if self._verify is not True else " (pass --cacert FILE for a private CA)")
                                      ) from None
            except requests.exceptions.Timeout:
                last = f"timed out after {self.timeout:g} s"
                continue
            except requests.exceptions.ConnectionError as exc:
                last = _connection_reason(exc)
                continue
            if resp.status_code == 503 and attempt + 1 < attempts:
                last = f"HTTP 503: {_error_text(resp)}"
                continue
            return self._decode(resp, method, url, expect_json)
        waited = time.monotonic() - start
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''} over {waited:.1f} s"
        if last.startswith("HTTP 503"):
            raise Unavailable(f"{method} {url}: {last} ({tries})")
        raise OperationFailed(f"cannot reach {self.base_url}: {last} ({tries}; {method} {url})")

    def _decode(self, resp: requests.Response, method: str, url: str, expect_json: bool) -> Any:
        if resp.status_code >= 400:
            text = _error_text(resp)
            msg = f"{url} answered HTTP {resp.status_code}: {text}"
            if resp.status_code == 404:
                raise NotFound(msg)
            if resp.status_code == 401 or resp.status_code == 403:
                raise InvalidInput(msg + " (pass --token or set MAASCTL_TOKEN)")
            if resp.status_code < 500:
                raise InvalidInput(msg)
            if resp.status_code == 503:
                raise Unavailable(msg)
            raise OperationFailed(msg)
        if not expect_json:
            return resp.content
        try:
            return loads(resp.content)
        except InvalidInput:
            raise OperationFailed(f"{method} {url}: the response is not JSON "
                                  f"({resp.content[:60]!r})") from None

    # -- TF Serving routes ---------------------------------------------------------------------------------
    def status(self, ref: ModelRef | str) -> dict[str, Any]:
        return self.request("GET", self.model_path(ref))

    def metadata(self, ref: ModelRef | str) -> dict[str, Any]:
        return self.request("GET", self.model_path(ref) + "/metadata")

    def predict(self, ref: ModelRef | str, body: bytes | dict[str, Any]) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("POST", self.model_path(ref) + ":predict", data=data)

    def predict_raw(self, ref: ModelRef | str, body: bytes) -> bytes:
        """Predict, returning the undecoded response body (callers decode with tensors.loads)."""
        return self.request("POST", self.model_path(ref) + ":predict", data=body, expect_json=False)

    def list_models(self) -> list[str] | None:
        """Model names from maasctl's `/v1/models` extension; None when the server has no such route."""
        try:
            doc = self.request("GET", "/v1/models", retry=True)
        except (NotFound, InvalidInput):
            return None
        except OperationFailed as exc:
            if "answered HTTP" in str(exc):
                return None
            raise
        items = doc.get("models") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            return None
        names = []
        for item in items:
            name = item.get("name") if isinstance(item, dict) else item
            if isinstance(name, str) and name not in names:
                names.append(name)
        return names


def _checked_cacert(path: str) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except FileNotFoundError:
        raise InvalidInput(f"--cacert {path}: no such file") from None
    except OSError as exc:
        raise InvalidInput(f"--cacert {path}: cannot read it ({exc.strerror})") from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise InvalidInput(f"--cacert {path}: not a PEM certificate file")
    return path


def _tls_reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("certificate verify failed", "[SSL"):
        i = text.find(marker)
        if i >= 0:
            text = text[i:]
            break
    return text.split("(_ssl.c")[0].strip(" )'\"")[:160]


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _error_text(resp: requests.Response) -> str:
    try:
        doc = resp.json()
    except ValueError:
        text = resp.text.strip().splitlines()
        return text[0][:200] if text else resp.reason or "no message"
    if isinstance(doc, dict) and "error" in doc:
        return str(doc["error"]).splitlines()[0] if str(doc["error"]) else "no message"
    return json.dumps(doc)[:200]


def _connection_reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    if "timed out" in text.lower():
        return "connection timed out"
    return "connection failed (" + text.split(":")[-1].strip(" )'\"")[:80] + ")"
