"""Signed versions with OpenSSF model-signing (the sigstore/model-transparency project), offline, EC keys.

A version's Sigstore bundle is `maas.sig` in its version directory. It covers every file of the version but
`maas.json` (rewritten by each store: version number, dates) and itself, one sha256 per file, and travels
inside `.maas` packages (the manifest's `signature_bundle` field). `model-signing` is an optional extra
(`pip install 'maasctl[sign]'`) imported only when a signature is made or checked; reading who signed a
version (the key fingerprint in the bundle) needs neither it nor TensorFlow.

Keyless Sigstore signing (OIDC, Fulcio, Rekor) needs the internet and is not wired in; it plugs in where
`_sign_config` picks `use_elliptic_key_signer` (model-signing's `use_sigstore_signer(...)`) and where
`verify_directory` picks `use_elliptic_key_verifier` (`use_sigstore_verifier(identity=..., oidc_issuer=...)`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maasctl.errors import InvalidInput, OperationFailed, Unimplemented
from maasctl.store import manifest as mf

SIGNATURE_NAME = mf.SIGNATURE_NAME
IGNORED = (mf.MANIFEST_NAME, SIGNATURE_NAME)
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
TRUSTED_KEYS_ENV = "MAASCTL_TRUSTED_KEYS"
MAX_BUNDLE_BYTES = 1 << 20


class SignatureError(OperationFailed):
    """A version is unsigned, signed by an untrusted key, or its files differ from what was signed."""


def _model_signing() -> Any:
    try:
        import model_signing  # noqa: F401
        from model_signing import hashing, signing, verifying
    except ImportError as exc:
        raise Unimplemented(f"signatures need the optional extra: pip install 'maasctl[sign]' ({exc})") from None
    return hashing, signing, verifying


# -- keys ---------------------------------------------------------------------------------------------------
def _read_pem(path: str | Path, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"{option} {path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{option} {path}: is a directory, expected a PEM key file") from None
    except OSError as exc:
        raise InvalidInput(f"{option} {path}: cannot read it ({exc.strerror})") from None


def _fingerprint(public_key: Any) -> str:
    """sha256 of the PEM public key: the `hint` model-signing writes into a bundle, so the two compare."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _check_curve(key: Any, path: str | Path, option: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) or key.curve.name not in CURVES:
        kind = getattr(getattr(key, "curve", None), "name", None) or type(key).__name__.lstrip("_")
        raise InvalidInput(f"{option} {path}: a {kind} key; model-signing uses EC keys on "
                           f"{', '.join(CURVES.values())}")


def private_key_fingerprint(path: str | Path) -> str:
    """Check a private key file (PEM, unencrypted, EC P-256/384/521); its public key's fingerprint."""
    from cryptography.hazmat.primitives import serialization

    data = _read_pem(path, "--key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise InvalidInput(f"--key {path}: the private key is encrypted; give an unencrypted key "
                           "(readable only by you: chmod 600)") from None
    except ValueError:
        if b"PUBLIC KEY" in data:
            raise InvalidInput(f"--key {path}: a public key; signing needs the private key") from None
        raise InvalidInput(f"--key {path}: not a PEM private key") from None
    _check_curve(key, path, "--key")
    return _fingerprint(key.public_key())


def public_key_fingerprint(path: str | Path, option: str = "--key") -> str:
    from cryptography.hazmat.primitives import serialization

    data = _read_pem(path, option)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        if b"PRIVATE KEY" in data:
            raise InvalidInput(f"{option} {path}: a private key; verifying needs only the public key "
                               "(keep the private one off serving machines)") from None
        raise InvalidInput(f"{option} {path}: not a PEM public key") from None
    _check_curve(key, path, option)
    return _fingerprint(key)


@dataclass(frozen=True)
class TrustedKey:
    path: Path
    fingerprint: str


def trusted_keys(keys: Iterable[str | Path] = (), env: dict[str, str] | None = None) -> list[TrustedKey]:
    """The public keys given with --key, else those in MAASCTL_TRUSTED_KEYS (paths separated by ':')."""
    paths = [Path(k) for k in keys]
    option = "--key"
    if not paths:
        text = (os.environ if env is None else env).get(TRUSTED_KEYS_ENV, "")
        paths = [Path(p) for p in text.split(os.pathsep) if p.strip()]
        option = TRUSTED_KEYS_ENV + ":"
    return [TrustedKey(p.resolve(), public_key_fingerprint(p, option)) for p in paths]


def generate_key(private_path: str | Path, public_path: str | Path, curve: str = "P-256") -> str:
    """A new EC key pair: the private key created 0600 (never readable by others, not even briefly)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    by_name: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
    if curve not in by_name:
        raise InvalidInput(f"--curve must be one of {', '.join(by_name)} (got {curve!r})")
    for p in (private_path, public_path):
        if Path(p).exists():
            raise InvalidInput(f"{p} already exists; refusing to overwrite a key")
    key = ec.generate_private_key(by_name[curve])
    write_secret(private_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    Path(public_path).write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    return _fingerprint(key.public_key())


def write_secret(path: str | Path, data: bytes) -> None:
    """Create a file for secret material with mode 0600 from the start (never world-readable, not even
    for an instant), refusing to overwrite an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# -- bundles --------------------------------------------------------------------------------------------------
def read_bundle(directory: Path) -> bytes | None:
    try:
        with open(directory / SIGNATURE_NAME, "rb") as f:
            return f.read(MAX_BUNDLE_BYTES + 1)
    except FileNotFoundError:
        return None


def bundle_summary(bundle: bytes | dict[str, Any] | None) -> dict[str, Any]:
    """{"signed", "key_fingerprint", "files"} read from the bundle alone (no model-signing, no check)."""
    if bundle is None:
        return {"signed": False, "key_fingerprint": None, "files": None}
    try:
        doc = bundle if isinstance(bundle, dict) else json.loads(bundle)
        hint = doc["verificationMaterial"]["publicKey"]["hint"]
        statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
        files = sorted(r["name"] for r in statement["predicate"]["resources"])
    except (ValueError, KeyError, TypeError):
        return {"signed": True, "key_fingerprint": None, "files": None, "error": "unreadable signature bundle"}
    return {"signed": True, "key_fingerprint": hint, "files": files}


def bundle_for_package(directory: Path, data: bytes | None = None) -> dict[str, Any] | None:
    """The bundle (`data`, else the directory's maas.sig) as a JSON object for a package manifest (None when
    unsigned)."""
    data = read_bundle(directory) if data is None else data
    if data is None:
        return None
    if len(data) > MAX_BUNDLE_BYTES:
        raise OperationFailed(f"{directory / SIGNATURE_NAME}: over {MAX_BUNDLE_BYTES} bytes; not a signature bundle")
    try:
        doc = json.loads(data)
    except ValueError:
        raise OperationFailed(f"{directory / SIGNATURE_NAME}: not a JSON signature bundle") from None
    if not isinstance(doc, dict):
        raise OperationFailed(f"{directory / SIGNATURE_NAME}: not a JSON signature bundle")
    return doc


def write_bundle(directory: Path, bundle: bytes | dict[str, Any]) -> None:
    """Put a bundle in place atomically (a reader sees the old one or the new one, never half)."""
    data = bundle if isinstance(bundle, bytes) else json.dumps(bundle, separators=(",", ":")).encode()
    tmp = directory.parent / f".{directory.name}.{SIGNATURE_NAME}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / SIGNATURE_NAME)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# -- signing and verifying ------------------------------------------------------------------------------------
def _hashing_config(hashing: Any) -> Any:
    # every file but ours is signed (git-looking names included: nothing in a version is there by accident)
    return (hashing.Config().use_file_serialization(hashing_algorithm="sha256", allow_symlinks=False)
            .set_ignored_paths(paths=list(IGNORED), ignore_git_paths=False))


def sign_directory(directory: Path, private_key: str | Path) -> bytes:
    """Sign a directory's files; returns the Sigstore bundle (written nowhere)."""
    import tempfile

    hashing, signing, _ = _model_signing()
    with tempfile.TemporaryDirectory(prefix="maasctl-sign-") as tmp:  # outside the hashed tree
        out = Path(tmp) / SIGNATURE_NAME
        try:
            config = signing.Config().use_elliptic_key_signer(private_key=str(private_key))
            config.set_hashing_config(_hashing_config(hashing)).sign(directory, out)
            return out.read_bytes()
        except (ValueError, OSError) as exc:
            raise OperationFailed(f"signing {directory} failed: {exc}") from None


def verify_directory(directory: Path, keys: list[TrustedKey], label: str,
                     unsigned_hint: str | None = None) -> TrustedKey:
    """Check the directory's bundle (its maas.sig) against the trusted keys and its files."""
    return verify_files(directory, read_bundle(directory), keys, label, unsigned_hint)


def verify_files(directory: Path, bundle: bytes | None, keys: list[TrustedKey], label: str,
                 unsigned_hint: str | None = None) -> TrustedKey:
    """Check a bundle against the trusted keys and the directory's files; the key that signed them.
    SignatureError (one line, naming the file or the key) otherwise."""
    import tempfile

    if bundle is None:
        raise SignatureError(f"{label} is not signed ("
                             + (unsigned_hint or f"sign it: maasctl sign {label} --key PRIVATE.pem") + ")")
    summary = bundle_summary(bundle)
    if summary.get("error"):
        raise SignatureError(f"{label}: {SIGNATURE_NAME} is an {summary['error']}")
    if not keys:
        raise InvalidInput("no trusted public key: pass --key PUBLIC.pem or set " + TRUSTED_KEYS_ENV)
    candidates = [k for k in keys if k.fingerprint == summary["key_fingerprint"]]
    if not candidates:
        raise SignatureError(f"{label} is signed by key {short(summary['key_fingerprint'])}, which is not trusted "
                             f"(trusted: {', '.join(short(k.fingerprint) for k in keys)})")
    hashing, _, verifying = _model_signing()
    key = candidates[0]
    with tempfile.TemporaryDirectory(prefix="maasctl-verify-") as tmp:
        sig = Path(tmp) / SIGNATURE_NAME
        sig.write_bytes(bundle)
        try:
            (verifying.Config().use_elliptic_key_verifier(public_key=str(key.path))
             .set_hashing_config(_hashing_config(hashing)).verify(directory, sig))
        except Exception as exc:  # noqa: BLE001 - model-signing raises ValueError and library-specific errors
            raise SignatureError(f"{label}: {_mismatch(str(exc))}") from None
    return key


def _mismatch(text: str) -> str:
    """model-signing's diff -> one line naming the files."""
    import re

    # the diff arrives as a list's repr: quotes may be escaped (\') when a digest's bytes hold both kinds
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]+)\\?'", text)
    if changed:
        return f"{', '.join(changed)} {'does' if len(changed) == 1 else 'do'} not match the signature"
    extra = re.search(r"Extra files found in model \\?'[^'\\]*\\?': ([^\"'\]\\]+)", text)
    if extra:
        return f"unsigned file(s) {extra.group(1).strip()} (not covered by the signature)"
    missing = re.search(r"Missing files in model \\?'[^'\\]*\\?': ([^\"'\]\\]+)", text)
    if missing:
        return f"signed file(s) {missing.group(1).strip()} missing"
    return "the signature does not verify (" + text.splitlines()[0][:200] + ")"


def short(fingerprint: str | None) -> str:
    return f"sha256:{fingerprint[:16]}" if fingerprint else "(unknown)"


# -- versions in a store --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _files_of(store: Any, info: Any) -> Iterator[Path]:
    """A directory with the version's files: a local store's own (model-signing hashes every file, so a
    changed one fails the check anyway), a remote store's verified copy in the cache."""
    from maasctl.store.local import LocalStore

    if isinstance(store, LocalStore):
        yield info.path
    else:
        with store.open_version(info) as path:
            yield path


def sign_version(store: Any, ref: str, private_key: str | Path) -> tuple[Any, str]:
    """Sign a stored version (after checking its files against the recorded digests: a damaged version is
    never signed); the bundle is kept with the version (store.set_signature). Returns (VersionInfo,
    key fingerprint)."""
    fingerprint = private_key_fingerprint(private_key)
    info = store.resolve(ref)
    problems = store.check_version(info)
    if problems:
        raise OperationFailed(f"{info.ref} is damaged ({problems[0]}); refusing to sign it "
                              f"(see: maasctl verify {info.ref})")
    with _files_of(store, info) as path:
        bundle = sign_directory(path, private_key)
    store.set_signature(info, bundle)
    return info, fingerprint


def verify_version(store: Any, info: Any, keys: list[TrustedKey], unsigned_hint: str | None = None) -> TrustedKey:
    """A stored version's signature (local or remote store) against the trusted keys and its files."""
    bundle = store.signature(info)
    if bundle is None:  # no download needed to say so
        return verify_files(Path(), None, keys, info.ref, unsigned_hint)
    with _files_of(store, info) as path:
        return verify_files(path, bundle, keys, info.ref, unsigned_hint)


def signature_problems(store: Any, info: Any, keys: list[TrustedKey]) -> list[str]:
    """`verify --key`: the version's signature problems as lines (empty when signed by a trusted key)."""
    try:
        verify_version(store, info, keys)
    except SignatureError as exc:
        return [str(exc).removeprefix(f"{info.ref}: ").removeprefix(f"{info.ref} is ")]
    except OperationFailed as exc:  # a remote version whose files are damaged: checked no further
        return [f"signature not checked: {exc}"]
    return []


def publish_check(keys: list[TrustedKey], label: str) -> Any:
    """For `register --require-signed`: refuse a staged version unless a trusted key signed exactly its files."""

    def check(staged: Path) -> None:
        verify_directory(staged, keys, label, "--require-signed registers only versions signed by a trusted key")

    return check
