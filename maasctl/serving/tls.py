"""TLS for `serve --tls-cert/--tls-key`: checked before anything binds, and the local readiness probe.

The certificate and key are loaded into an SSLContext here first, so a missing, unreadable or mismatched
file is one `Error:` line (exit 2) before the port is taken or a model is loaded; uvicorn then builds its
own context from the same files.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from maasctl.errors import InvalidInput


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path


def tls_files(cert: str | Path | None, key: str | Path | None) -> TlsFiles | None:
    """Both or neither; each readable, and the key must belong to the certificate."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InvalidInput("--tls-cert and --tls-key go together (give both, or neither for plain HTTP)")
    files = TlsFiles(Path(cert).resolve(), Path(key).resolve())
    server_context(files)
    return files


def _readable(path: Path, option: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except FileNotFoundError:
        raise InvalidInput(f"{option} {path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{option} {path}: is a directory, expected a PEM file") from None
    except OSError as exc:
        raise InvalidInput(f"{option} {path}: cannot read it ({exc.strerror})") from None


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The server's context (TLS 1.2+); InvalidInput naming the file on any problem."""
    _readable(files.cert, "--tls-cert")
    _readable(files.key, "--tls-key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(files.cert), str(files.key), password=_no_password)
    except ssl.SSLError as exc:
        reason = (exc.reason or str(exc)).upper()
        if "KEY_VALUES_MISMATCH" in reason:
            raise InvalidInput(f"--tls-key {files.key} does not belong to the certificate in --tls-cert "
                               f"{files.cert}") from None
        if "PEM" in reason or "NO_START_LINE" in reason or "CA_MD" in reason or "X509" in reason:
            what = "--tls-cert" if _pem_kind(files.cert) != "CERTIFICATE" else "--tls-key"
            path = files.cert if what == "--tls-cert" else files.key
            raise InvalidInput(f"{what} {path}: not a usable PEM {'certificate' if what == '--tls-cert' else 'private key'}"
                               f" ({exc.reason or exc})") from None
        raise InvalidInput(f"--tls-cert {files.cert} / --tls-key {files.key}: {exc.reason or exc}") from None
    except _EncryptedKey:
        raise InvalidInput(f"--tls-key {files.key}: the key is encrypted; give an unencrypted key "
                           "(readable only by the serving user: chmod 600)") from None
    return ctx


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    raise _EncryptedKey


def _pem_kind(path: Path) -> str:
    try:
        head = path.read_bytes()[:4096]
    except OSError:
        return ""
    marker = head.find(b"-----BEGIN ")
    if marker < 0:
        return ""
    end = head.find(b"-----", marker + 11)
    return head[marker + 11:end].decode(errors="replace")


def probe_context(cert: str | Path) -> ssl.SSLContext:
    """A client context for probing our own detached server: trust exactly its certificate (pinned; the
    probe sends a token, so it must not talk to whatever else might hold the port), whatever names it
    carries (the probe dials 127.0.0.1)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(cert))
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a leaf signed by a CA we do not have is trusted itself
    return ctx
