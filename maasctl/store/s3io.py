"""The S3 side of the S3 store: the client, the error mapping and the conditional-write primitives.

Credentials and endpoint come from the standard AWS chain only (environment, profile, ~/.aws/config,
`AWS_ENDPOINT_URL[_S3]`); nothing here prints or records them. Retries (including 500/503) are botocore's
"standard" mode: 3 attempts in all unless AWS_MAX_ATTEMPTS (or `max_attempts` in the profile) says otherwise,
with exponential backoff, for throttling (503 SlowDown), 500/502/504 and connection errors. A failed condition is 412 (`PreconditionFailed`); a concurrent conflicting write can be
409 (`ConditionalRequestConflict`); `If-Match` on a missing key is 404: all three mean "lost the race".
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from maasctl.errors import InvalidInput, MaasError, NotFound, OperationFailed

try:
    import boto3  # type: ignore[import-untyped]
    from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError  # type: ignore[import-untyped]
except ImportError:  # the optional extra is missing; open_s3_store says so in one line
    boto3 = None

EXTRA_HINT = "--store s3://... needs the s3 extra: pip install 'maasctl[s3]'"
LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
ACCESS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "ExpiredToken",
          "InvalidToken", "AllAccessDisabled"}
MISSING_KEY = {"NoSuchKey", "404", "NotFound"}


class LostRace(Exception):
    """A conditional write found the object changed (or present / absent) underneath it."""


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    @classmethod
    def parse(cls, spec: str) -> Location:
        rest = spec[len("s3://"):]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise InvalidInput(f"--store {spec}: expected s3://BUCKET/PREFIX")
        prefix = prefix.strip("/")
        return cls(bucket, prefix + "/" if prefix else "")

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)


class S3:
    """A thin, error-mapped wrapper over one boto3 client for one bucket."""

    def __init__(self, loc: Location) -> None:
        if boto3 is None:
            raise OperationFailed(EXTRA_HINT)
        self.loc = loc
        self.bucket = loc.bucket
        self.client = _client()
        self.transfer = self.transfer_config()

    @staticmethod
    def transfer_config() -> Any:
        """boto3's managed transfer settings for one file: multipart above 16 MiB, 8 parts at once."""
        return TransferConfig(max_concurrency=8, multipart_threshold=16 << 20, multipart_chunksize=16 << 20)

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Map botocore failures to one-line MaasErrors (never echoing credentials)."""
        try:
            yield
        except (LostRace, MaasError):
            raise
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                raise NotFound(f"bucket '{self.bucket}' does not exist ({self.loc.url})") from None
            if code in ACCESS or status == 403:
                raise OperationFailed(f"access denied to {self.loc.url} while {what} ({code or status}); "
                                      f"check the AWS credentials and the bucket policy") from None
            tries = exc.response.get("ResponseMetadata", {}).get("RetryAttempts") or 0
            after = f" (gave up after {tries + 1} attempts)" if tries else ""
            raise OperationFailed(f"S3 error while {what} in {self.loc.url}: {code or status}{after}") from None
        except (NoCredentialsError, PartialCredentialsError):
            raise OperationFailed(f"no usable AWS credentials for {self.loc.url} (set AWS_ACCESS_KEY_ID and "
                                  f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)") from None
        except BotoCoreError as exc:
            endpoint = self.client.meta.endpoint_url
            kind = type(exc).__name__
            raise OperationFailed(f"cannot reach the S3 endpoint {endpoint} while {what} ({kind})") from None

    # -- objects -------------------------------------------------------------------------------------
    def get(self, key: str) -> tuple[bytes, str] | None:
        """(body, etag) or None when the key does not exist."""
        with self.errors(f"reading {key}"):
            try:
                r = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in MISSING_KEY:
                    return None
                raise
            return r["Body"].read(), r["ETag"]

    def get_json(self, key: str) -> tuple[dict[str, Any], str] | None:
        got = self.get(key)
        if got is None:
            return None
        try:
            doc = json.loads(got[0])
        except ValueError:
            raise OperationFailed(f"s3://{self.bucket}/{key}: not valid JSON") from None
        return doc, got[1]

    def put(self, key: str, body: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Write an object; with a condition, LostRace when it does not hold. Returns the new ETag."""
        extra: dict[str, Any] = {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = if_match
        with self.errors(f"writing {key}"):
            try:
                r = self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
            except ClientError as exc:
                code = _code(exc)
                if extra and (code in LOST_RACE or (if_match is not None and code in MISSING_KEY)):
                    raise LostRace(key) from None
                raise
            return r["ETag"]

    def put_json(self, key: str, doc: dict[str, Any], **cond: Any) -> str:
        return self.put(key, json.dumps(doc, sort_keys=True).encode(), **cond)

    def delete(self, keys: list[str]) -> None:
        with self.errors("deleting objects"):
            for i in range(0, len(keys), 1000):
                chunk = [{"Key": k} for k in keys[i:i + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})

    def objects(self, prefix: str) -> list[dict[str, Any]]:
        """Every object under prefix: [{Key, ETag, Size, LastModified}], in key order."""
        out: list[dict[str, Any]] = []
        with self.errors(f"listing {prefix or '/'}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                out.extend(page.get("Contents", []))
        return out

    def list_dirs(self, prefix: str) -> list[str]:
        """The next path segment of every key under prefix (S3 'common prefixes')."""
        out: list[str] = []
        with self.errors(f"listing {prefix or '/'}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix,
                                                                          Delimiter="/")
            for page in pages:
                out.extend(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
        return out

    def put_file(self, path: str, key: str, size: int, progress: Any = None) -> None:
        """Upload one file: a single PUT below the multipart threshold (no transfer manager to set up),
        boto3's managed multipart transfer above it. `progress(bytes)` is told as bytes go out."""
        if size >= self.transfer.multipart_threshold:
            with self.errors(f"uploading {key}"):
                self.client.upload_file(path, self.bucket, key, Config=self.transfer, Callback=progress)
            return
        with open(path, "rb") as f, self.errors(f"uploading {key}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=f)
        if progress is not None:
            progress(size)

    def get_file(self, key: str, path: str, size: int, progress: Any = None) -> None:
        """Download one object: a single GET below the multipart threshold (the managed transfer would HEAD
        first), boto3's ranged parallel download above it. NotFound when the object is missing."""
        if size >= self.transfer.multipart_threshold:
            self.download_file(key, path, progress)
            return
        with self.errors(f"downloading {key}"):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            except ClientError as exc:
                if _code(exc) in MISSING_KEY:
                    raise NotFound(f"s3://{self.bucket}/{key} is missing") from None
                raise
            with open(path, "wb") as f:
                for chunk in body.iter_chunks(1 << 20):
                    f.write(chunk)
                    if progress is not None:
                        progress(len(chunk))

    def download_file(self, key: str, path: str, progress: Any = None) -> None:
        with self.errors(f"downloading {key}"):
            try:
                self.client.download_file(self.bucket, key, path, Config=self.transfer, Callback=progress)
            except ClientError as exc:
                if _code(exc) in MISSING_KEY:
                    raise NotFound(f"s3://{self.bucket}/{key} is missing") from None
                raise

    def copy(self, src_key: str, dst_key: str) -> None:
        """Server-side copy inside the bucket (CopyObject; multipart UploadPartCopy above 16 MiB): no bytes
        pass through this machine."""
        with self.errors(f"copying {src_key}"):
            try:
                self.client.copy({"Bucket": self.bucket, "Key": src_key}, self.bucket, dst_key, Config=self.transfer)
            except ClientError as exc:
                if _code(exc) in MISSING_KEY:
                    raise NotFound(f"s3://{self.bucket}/{src_key} is missing") from None
                raise

    def stale_uploads(self, prefix: str, older_than: float) -> list[tuple[str, str]]:
        """(key, upload id) of multipart uploads under prefix started before `older_than` (epoch seconds)."""
        out = []
        with self.errors("listing multipart uploads"):
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for u in page.get("Uploads", []):
                    if u["Initiated"].timestamp() < older_than:
                        out.append((u["Key"], u["UploadId"]))
        return out

    def abort_upload(self, key: str, upload_id: str) -> None:
        with self.errors(f"aborting the upload of {key}"):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)


_CLIENTS: dict[int, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client() -> Any:
    """One client per process (creating one parses botocore's service model: ~0.1-1 s). Clients are
    thread-safe; the AWS chain is read once, at the first use."""
    with _CLIENTS_LOCK:
        pid = os.getpid()
        if pid not in _CLIENTS:
            cfg = Config(retries={"mode": "standard"}, max_pool_connections=32, connect_timeout=5, read_timeout=60)
            _CLIENTS.clear()
            _CLIENTS[pid] = boto3.session.Session().client("s3", config=cfg)
        return _CLIENTS[pid]


def _code(exc: ClientError) -> str:
    err = exc.response.get("Error", {}).get("Code")
    return str(err if err else exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
