"""Persistent metrics: one row per pass, plus running counters, in SQLite.

The file lives beside the manifest and survives restarts. It holds history, not the
index's state: what the store holds right now is read from the manifest instead.
``keep_passes`` bounds the history so the file cannot grow without end.
"""

from __future__ import annotations

import sqlite3
import statistics
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS passes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at REAL NOT NULL,
    duration_s REAL NOT NULL,
    files_scanned INTEGER NOT NULL,
    files_changed INTEGER NOT NULL,
    files_deleted INTEGER NOT NULL,
    files_failed INTEGER NOT NULL,
    files_read INTEGER NOT NULL DEFAULT 0,
    chunks_embedded INTEGER NOT NULL,
    chunks_deleted INTEGER NOT NULL,
    chunks_reused INTEGER NOT NULL,
    texts_embedded INTEGER NOT NULL,
    chunks_per_s REAL NOT NULL,
    peak_rss_bytes INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass
class PassRecord:
    """The figures of one pass, as stored and as sent to clients."""

    kind: str
    trigger: str
    started_at: float
    duration_s: float = 0.0
    files_scanned: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    files_failed: int = 0
    files_read: int = 0
    chunks_embedded: int = 0
    chunks_deleted: int = 0
    chunks_reused: int = 0
    texts_embedded: int = 0
    chunks_per_s: float = 0.0
    peak_rss_bytes: int = 0
    outcome: str = "ok"
    error: str | None = None
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain map for the wire."""
        return asdict(self)


_COLUMNS = [name for name in PassRecord.__dataclass_fields__ if name != "id"]


class Metrics:
    """The metrics database of one state directory."""

    def __init__(self, path: Path, keep_passes: int = 10_000) -> None:
        """Open (creating if needed) the metrics database at ``path``."""
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._keep = keep_passes
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns a metrics file written by an older novad lacks."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(passes)")}
        if "files_read" not in have:
            self._db.execute("ALTER TABLE passes ADD COLUMN files_read INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database and truncate it (TRAPS C08)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def begin(self, rec: PassRecord) -> None:
        """Store a pass as ``running`` as it starts, so a kill leaves a trace of it."""
        marks = ",".join("?" * len(_COLUMNS))
        values = [getattr(rec, c) for c in _COLUMNS]
        values[_COLUMNS.index("outcome")] = "running"
        with self._lock:
            cur = self._db.execute(
                f"INSERT INTO passes ({','.join(_COLUMNS)}) VALUES ({marks})", values
            )
        rec.id = cur.lastrowid

    def mark_interrupted(self) -> int:
        """Mark passes a kill left ``running`` as ``interrupted``; return how many."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE passes SET outcome = 'interrupted', "
                "error = 'the daemon stopped before the pass ended (killed or crashed)' "
                "WHERE outcome = 'running'"
            )
        return cur.rowcount

    def record(self, rec: PassRecord) -> PassRecord:
        """Store one finished pass (begun or not) and add its embeddings to the counters."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            if rec.id is None:
                marks = ",".join("?" * len(_COLUMNS))
                values = [getattr(rec, c) for c in _COLUMNS]
                cur = self._db.execute(
                    f"INSERT INTO passes ({','.join(_COLUMNS)}) VALUES ({marks})", values
                )
                rec.id = cur.lastrowid
            else:
                sets = ",".join(f"{c} = ?" for c in _COLUMNS)
                values = [getattr(rec, c) for c in _COLUMNS]
                self._db.execute(f"UPDATE passes SET {sets} WHERE id = ?", [*values, rec.id])
            self._bump("texts_embedded", rec.texts_embedded)
            self._bump("chunks_reused", rec.chunks_reused)
            self._db.execute(
                "DELETE FROM passes WHERE id <= (SELECT MAX(id) FROM passes) - ?", (self._keep,)
            )
            self._db.execute("COMMIT")
        return rec

    def _bump(self, name: str, amount: int) -> None:
        self._db.execute(
            "INSERT INTO counters VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )

    def recent(self, limit: int) -> list[PassRecord]:
        """The last ``limit`` passes, newest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, {','.join(_COLUMNS)} FROM passes ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [PassRecord(**dict(zip(["id", *_COLUMNS], row, strict=True))) for row in rows]

    def counters(self) -> dict[str, int]:
        """Running totals kept across restarts."""
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM counters").fetchall())

    def summary(self, sample: int = 1000) -> dict[str, Any]:
        """Pass figures for ``stats``: counts by kind and trigger, durations, throughput."""
        with self._lock:
            by_kind = dict(self._db.execute("SELECT kind, COUNT(*) FROM passes GROUP BY kind"))
            by_trigger = dict(
                self._db.execute("SELECT trigger, COUNT(*) FROM passes GROUP BY trigger")
            )
            outcomes = dict(
                self._db.execute("SELECT outcome, COUNT(*) FROM passes GROUP BY outcome")
            )
            peak = self._db.execute("SELECT MAX(peak_rss_bytes) FROM passes").fetchone()[0]
        recent = self.recent(sample)
        total = sum(by_kind.values())
        working = [r for r in recent if r.chunks_embedded > 0 and r.outcome == "ok"]
        ok = outcomes.get("ok", 0)
        failed = outcomes.get("failed", 0) + outcomes.get("interrupted", 0)
        return {
            "total": total,
            "by_kind": by_kind,
            "by_trigger": by_trigger,
            "by_outcome": outcomes,
            "failed": failed,
            "success_rate": ok / (ok + failed) if ok + failed else None,
            "last_duration_s": recent[0].duration_s if recent else None,
            "median_duration_s": _median([r.duration_s for r in recent]),
            "last_chunks_per_s": working[0].chunks_per_s if working else None,
            "median_chunks_per_s": _median([r.chunks_per_s for r in working]),
            "peak_rss_bytes": peak,
        }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
