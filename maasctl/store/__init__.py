"""The artifact store: TF Serving version directories plus a registry index (design.md §2, §6).

`ModelStore` is the interface; `LocalStore` (directory + SQLite) and `S3Store` (store/s3.py, optional extra)
implement it; `open_store(spec)` picks one from `--store PATH|s3://BUCKET/PREFIX`.
"""

from maasctl.store.base import ModelStore, open_store
from maasctl.store.local import LocalStore
from maasctl.store.types import GcReport, ModelSummary, RegisterResult, VerifyReport, VersionInfo, default_root, utcnow

Store = LocalStore  # the name the local store had before the store interface; still importable

__all__ = ["GcReport", "LocalStore", "ModelStore", "ModelSummary", "RegisterResult", "Store", "VerifyReport",
           "VersionInfo", "default_root", "open_store", "utcnow"]
