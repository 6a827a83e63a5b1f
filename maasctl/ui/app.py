"""The web view as a plain ASGI app (like maasctl.serving.app): GET/HEAD only, HTML pages and `/api/...` JSON.

Routes (each page has its JSON twin under /api):
    /                       models               /api/models
    /models/NAME            versions + aliases   /api/models/NAME
    /models/NAME/N          one version          /api/models/NAME/N
    /runs, /runs/ID         runs, one run        /api/runs, /api/runs/ID
    /runs/compare?run=A&run=B[&metric=M]          /api/runs/compare?...
    /servers                detached servers     /api/servers

With a token, every route needs it: `Authorization: Bearer TOKEN`, or the cookie that `?token=TOKEN` sets once
(then a redirect drops it from the address bar). Store reads run in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from maasctl.errors import MaasError, NotFound
from maasctl.ui import data, pages

log = logging.getLogger("maasctl.ui")

COOKIE = "maasctl_ui_token"
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
Response = tuple[int, list[tuple[bytes, bytes]], bytes]


class UiApp:
    def __init__(self, store: Any, *, token: str | None = None, probe: data.ServerProbe | None = None) -> None:
        self.store = store
        self._token = token.encode() if token else None
        # the cookie holds a digest of the token, never the token itself (any characters, nothing to leak)
        self._cookie = (hashlib.sha256(b"maasctl-ui-cookie\0" + self._token).hexdigest().encode()
                        if self._token else b"")
        self.probe = probe or data.ServerProbe()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        status, headers, body = await asyncio.to_thread(self.respond, scope)
        headers = [*headers, (b"content-length", str(len(body)).encode()), (b"x-content-type-options", b"nosniff"),
                   (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    # -- one request ----------------------------------------------------------------------------------------
    def respond(self, scope: dict[str, Any]) -> Response:
        path: str = scope["path"]
        api = path == "/api" or path.startswith("/api/")
        try:
            if scope["method"] not in ("GET", "HEAD"):
                return self._error(405, "this view is read-only: GET and HEAD only", api,
                                   [(b"allow", b"GET, HEAD")])
            if self._token is not None:
                redirect = self._authorize(scope, path)
                if redirect is not None:
                    return redirect
            return self._route(path, api, parse_qs(scope.get("query_string", b"").decode("latin-1")))
        except MaasError as exc:
            return self._error(exc.http_status, str(exc), api)
        except Exception as exc:  # the crash boundary: log it, show only that it happened
            log.exception("internal error on %s %s", scope.get("method"), path)
            return self._error(500, f"internal error: {type(exc).__name__} (see the log of maasctl ui)", api)

    def _route(self, path: str, api: bool, query: dict[str, list[str]]) -> Response:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if api:
            parts = parts[1:]
        if parts == ["runs", "compare"]:  # never a run id (ids are YYYYMMDD-HHMMSS-hex)
            doc = data.compare_runs(self.store, query.get("run", []), (query.get("metric") or [""])[0] or None)
            if api:
                return 200, [(b"content-type", b"application/json")], json.dumps(doc, indent=1).encode()
            return 200, _html_headers(), pages.compare_page(doc).encode()
        routes: dict[tuple[str, int], tuple[Callable[..., Any], Callable[[Any], str]]] = {
            ("", 0): (lambda: data.models(self.store), pages.models_page),
            ("models", 1): (lambda: data.models(self.store), pages.models_page),
            ("models", 2): (lambda n: data.model(self.store, n), pages.model_page),
            ("models", 3): (lambda n, v: data.version(self.store, n, v), pages.version_page),
            ("runs", 1): (lambda: data.runs(self.store), pages.runs_page),
            ("runs", 2): (lambda r: data.run(self.store, r), pages.run_page),
            ("servers", 1): (lambda: self.probe.servers(self.store), pages.servers_page),
        }
        key = (parts[0] if parts else "", len(parts))
        if key not in routes:
            raise NotFound(f"no page at {path}")
        fetch, render = routes[key]
        doc = fetch(*parts[1:])
        if api:
            return 200, [(b"content-type", b"application/json")], json.dumps(doc, indent=1, default=str).encode()
        return 200, _html_headers(), render(doc).encode()

    def _authorize(self, scope: dict[str, Any], path: str) -> Response | None:
        assert self._token is not None
        given = _bearer(scope)
        if given is not None and hmac.compare_digest(given, self._token):
            return None
        cookie = _cookie(scope, COOKIE)
        if cookie is not None and hmac.compare_digest(cookie, self._cookie):
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        from_query = (query.get("token") or [""])[0].encode()
        if from_query and hmac.compare_digest(from_query, self._token):
            cookie = COOKIE.encode() + b"=" + self._cookie + b"; Path=/; HttpOnly; SameSite=Strict"
            return 303, [(b"location", path.encode()), (b"set-cookie", cookie),
                         (b"content-type", b"text/plain")], b"see " + path.encode()
        offered = given is not None or cookie is not None or from_query
        raise _Unauthorized("invalid token" if offered else "this view needs its token")

    def _error(self, status: int, message: str, api: bool, extra: list[tuple[bytes, bytes]] | None = None
               ) -> Response:
        headers = list(extra or [])
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        if api:
            return status, [(b"content-type", b"application/json"), *headers], json.dumps({"error": message}).encode()
        return status, [*_html_headers(), *headers], pages.error_page(status, message).encode()


class _Unauthorized(MaasError):
    http_status = 401


def _html_headers() -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"text/html; charset=utf-8"), (b"content-security-policy", CSP.encode())]


def _bearer(scope: dict[str, Any]) -> bytes | None:
    for k, v in scope["headers"]:
        if k == b"authorization":
            scheme, _, credentials = v.strip().partition(b" ")
            return credentials.strip() if scheme.lower() == b"bearer" else b""
    return None


def _cookie(scope: dict[str, Any], name: str) -> bytes | None:
    for k, v in scope["headers"]:
        if k == b"cookie":
            for item in v.split(b";"):
                key, _, value = item.strip().partition(b"=")
                if key == name.encode():
                    return value
    return None
