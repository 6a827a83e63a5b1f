"""Bearer tokens with scopes: who may call which route of the REST API.

Scopes: `predict` (the :predict/:classify/:regress routes), `read` (model status, metadata, the model list
and /readyz) and `metrics` (Prometheus). /healthz is always open (a liveness probe carries no secret).
A single `--token` holds every scope; `--token-file FILE` holds `TOKEN SCOPE[,SCOPE...]` lines.

A request without a valid token is 401 (who are you?); a valid token without the route's scope is 403
(you may not). Every configured token is compared in constant time (hmac.compare_digest) and all of them
are always compared, so the answer's timing says nothing about which token nearly matched.
Token text never appears in an error message, a log line or a repr.
"""

from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path
from typing import Any

from maasctl.errors import InvalidInput, MaasError

SCOPES = ("predict", "read", "metrics")
ALL_SCOPES = frozenset(SCOPES)
OPEN_PATHS = frozenset({"/healthz"})
_METRICS = "/monitoring/prometheus/metrics"
_PREDICT_VERBS = (":predict", ":classify", ":regress")


class AuthError(MaasError):
    """401 or 403 with its WWW-Authenticate header (the REST app answers MaasError.http_status)."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(message)
        self.http_status = status
        self.headers = headers


def required_scope(path: str) -> str | None:
    """The scope a route needs; None for the open ones. Unknown routes need `read` (their 404 says what
    exists, which a caller without a token need not learn)."""
    if path in OPEN_PATHS:
        return None
    if path == _METRICS:
        return "metrics"
    if path.startswith("/v1/models/") and path.endswith(_PREDICT_VERBS):
        return "predict"
    return "read"


class TokenTable:
    """Tokens and their scopes. Build with `single()` or `load()`; `check(scope)` authorizes one request."""

    def __init__(self, entries: list[tuple[bytes, frozenset[str]]], source: str = "--token") -> None:
        if not entries:
            raise InvalidInput(f"{source}: no tokens")
        merged: dict[bytes, frozenset[str]] = {}
        for token, scopes in entries:
            merged[token] = merged.get(token, frozenset()) | scopes
        self._entries = list(merged.items())
        self.source = source

    def __repr__(self) -> str:  # never the tokens themselves
        return f"TokenTable({len(self._entries)} token(s) from {self.source})"

    @classmethod
    def single(cls, token: str) -> TokenTable:
        check_token_text(token, "--token")
        return cls([(token.encode(), ALL_SCOPES)], "--token")

    @classmethod
    def load(cls, path: str | Path) -> TokenTable:
        """Parse a token file: `TOKEN SCOPE[,SCOPE...]` per line; blank lines and `#` comments skipped.
        Errors name the file and line, never the token."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInput(f"--token-file {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"--token-file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})"
                               ) from None
        entries = []
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            where = f"--token-file {path}, line {lineno}"
            if len(parts) != 2:
                raise InvalidInput(f"{where}: expected 'TOKEN SCOPE[,SCOPE...]' (scopes: {', '.join(SCOPES)})")
            token, scope_text = parts
            check_token_text(token, where)
            scopes = frozenset(s for s in scope_text.split(",") if s)
            unknown = sorted(scopes - ALL_SCOPES)
            if unknown or not scopes:
                raise InvalidInput(f"{where}: unknown scope '{unknown[0] if unknown else scope_text}' "
                                   f"(scopes: {', '.join(SCOPES)})")
            entries.append((token.encode(), scopes))
        return cls(entries, f"--token-file {path}")

    def token_with(self, scope: str) -> str | None:
        """A token holding `scope` (the --detach readiness probe needs one with `read`)."""
        for token, scopes in self._entries:
            if scope in scopes:
                return token.decode()
        return None

    def scopes_of(self, credentials: bytes) -> frozenset[str] | None:
        found: frozenset[str] | None = None
        for token, scopes in self._entries:  # no early exit: every token is compared every time
            if hmac.compare_digest(credentials, token):
                found = scopes
        return found

    def check(self, scope: dict[str, Any]) -> None:
        """Raise AuthError (401/403) unless the request's bearer token holds the route's scope."""
        needed = required_scope(scope["path"])
        if needed is None:
            return
        for k, v in scope["headers"]:
            if k == b"authorization":
                scheme, _, credentials = v.strip().partition(b" ")
                # the scheme is case-insensitive (RFC 7235); the token is compared in constant time
                granted = self.scopes_of(credentials.strip(b" ")) if scheme.lower() == b"bearer" else None
                if granted is None:
                    raise AuthError(401, "invalid bearer token",
                                    [(b"www-authenticate", b'Bearer error="invalid_token"')])
                if needed not in granted:
                    raise AuthError(403, f"this token lacks the '{needed}' scope needed for {scope['path'][:200]} "
                                         f"(it has: {', '.join(sorted(granted))})",
                                    [(b"www-authenticate",
                                      f'Bearer error="insufficient_scope", scope="{needed}"'.encode())])
                return
        raise AuthError(401, "missing 'Authorization: Bearer <token>' header (this server requires a token)",
                        [(b"www-authenticate", b"Bearer")])


def check_token_text(token: str, where: str) -> None:
    if not token or any(c.isspace() for c in token) or not token.isprintable() or not token.isascii():
        raise InvalidInput(f"{where}: a token must be printable ASCII without spaces")


def build_table(token: str | None, token_file: str | Path | None) -> TokenTable | None:
    """The table for `serve --token` / `--token-file` (not both); None when neither is given."""
    if token and token_file:
        raise InvalidInput("give --token (or MAASCTL_TOKEN) or --token-file, not both")
    if token_file:
        return TokenTable.load(token_file)
    if token:
        return TokenTable.single(token)
    return None


def loose_permissions(path: str | Path) -> str | None:
    """A warning when a secret file can be read by other users (like ssh's check), else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"warning: {path} is readable by other users (mode {stat.S_IMODE(mode):04o}); "
                f"restrict it: chmod 600 {path}")
    return None
