"""The artifact store: TF Serving version directories plus a registry index (design.md §2)."""

from maasctl.store.local import Store
from maasctl.store.types import GcReport, ModelSummary, RegisterResult, VerifyReport, VersionInfo, default_root, utcnow

__all__ = ["GcReport", "ModelSummary", "RegisterResult", "Store", "VerifyReport", "VersionInfo", "default_root",
           "utcnow"]
