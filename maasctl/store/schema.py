"""The index's SQLite schema (index.db, WAL mode)."""

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    next_version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL REFERENCES models(name),
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    lineage TEXT NOT NULL DEFAULT '{}',
    meta TEXT NOT NULL DEFAULT '{}',
    removed_at TEXT,
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS versions_sha ON versions(name, sha256);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    name TEXT NOT NULL,
    event TEXT NOT NULL,
    version INTEGER,
    alias TEXT,
    from_version INTEGER,
    to_version INTEGER,
    who TEXT
);
"""


def migrate(conn: sqlite3.Connection) -> None:
    """Bring an index written by an older maasctl up to SCHEMA (columns added since are nullable)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    if "who" not in columns:
        conn.execute("ALTER TABLE events ADD COLUMN who TEXT")
