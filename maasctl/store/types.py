"""What the store hands out: version records and the results of register, verify and gc."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


# the keys of one registry event, as `history` returns them from either store kind
EVENT_FIELDS = ("at", "event", "version", "alias", "from_version", "to_version", "who")


def who() -> str:
    """user@host, recorded with each registry event (both store kinds)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def default_root() -> Path:
    env = os.environ.get("MAASCTL_HOME")
    return Path(env).expanduser() if env else Path.home() / ".maasctl"


@dataclass
class VersionInfo:
    name: str
    version: int
    created_at: str
    sha256: str
    size: int
    path: Path
    source: str = ""
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    uri: str = ""  # where a remote store keeps it (s3://bucket/prefix/models/NAME/N/); path is then unused

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def where(self) -> str:
        return self.uri or str(self.path)

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref, "name": self.name, "version": self.version, "aliases": self.aliases,
            "created_at": self.created_at, "sha256": self.sha256, "size": self.size, "path": self.where,
            "source": self.source, "description": self.description, "tags": self.tags,
            "metrics": self.metrics, "lineage": self.lineage,
            **{k: self.meta.get(k) for k in ("task", "feature_names", "class_names")},
        }


@dataclass
class ModelSummary:
    name: str
    latest: int | None
    count: int
    aliases: dict[str, int]
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "latest": self.latest, "versions": self.count,
                "aliases": self.aliases, "created_at": self.created_at}


@dataclass
class RegisterResult:
    info: VersionInfo
    created: bool

    def to_json(self) -> dict[str, Any]:
        return {**self.info.to_json(), "created": self.created}


@dataclass
class VerifyReport:
    ref: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "ok": self.ok, "problems": self.problems}


@dataclass
class GcReport:
    staging: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    dry_run: bool = False
    runs: list[str] = field(default_factory=list)  # run ids (gc --runs-older-than)
    logs: list[str] = field(default_factory=list)  # log files of stopped servers

    def to_json(self) -> dict[str, Any]:
        return {"staging_removed": self.staging, "orphans_removed": self.orphans,
                "versions_removed": self.versions, "dry_run": self.dry_run, "runs_removed": self.runs,
                "logs_removed": self.logs}


