"""The SQLite manifest: what the store holds, per generation, per note.

Tables: ``generations`` (collection name, model, dimension, chromadb version, state
``building``/``active``/``retired``), ``files`` (note id -> size, mtime, content hash,
status ``indexed``/``empty``/``skipped`` and a reason) and ``chunks`` (chunk id -> note,
position, hash of the embedded text).

Write order, which makes a kill at any instant repairable at the next start:

1. new chunks are upserted into the store;
2. one manifest transaction records the notes and their new chunk ids;
3. chunks no longer referenced are deleted from the store.

A kill after 1 or 2 leaves store chunks the manifest does not reference; start-up
reconciliation deletes them. A manifest entry whose chunks are missing from the store is
dropped at start-up, so the note is indexed again. WAL mode with ``synchronous=NORMAL``
survives process kills; only a power cut can lose the last transactions, which the same
reconciliation repairs.

One connection, guarded by a lock, serves the pass thread and the readers.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    gen INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    model TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    chromadb_version TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('building', 'active', 'retired')),
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    gen INTEGER NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('indexed', 'empty', 'skipped')),
    reason TEXT,
    indexed_at REAL NOT NULL,
    PRIMARY KEY (gen, path)
);
CREATE TABLE IF NOT EXISTS chunks (
    gen INTEGER NOT NULL,
    id TEXT NOT NULL,
    path TEXT NOT NULL,
    seq INTEGER NOT NULL,
    text_hash TEXT NOT NULL,
    PRIMARY KEY (gen, id)
);
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks (gen, path);
CREATE INDEX IF NOT EXISTS chunks_by_text ON chunks (gen, text_hash);
"""


@dataclass(frozen=True)
class Generation:
    """One complete (or being built) collection of chunks."""

    gen: int
    collection: str
    model: str
    dimension: int
    chromadb_version: str
    state: str


@dataclass(frozen=True)
class FileRecord:
    """What the manifest knows of one note."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str
    status: str
    reason: str | None


@dataclass(frozen=True)
class ChunkRow:
    """One chunk as the manifest records it."""

    id: str
    seq: int
    text_hash: str


@dataclass(frozen=True)
class FileUpdate:
    """A note's new state: its record and its chunks, in order."""

    record: FileRecord
    chunks: Sequence[ChunkRow]


class Manifest:
    """The manifest database of one state directory."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the manifest at ``path``."""
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database and truncate it (TRAPS C08)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _rows_in(self, sql: str, gen: int, values: Iterable[str]) -> list[tuple]:
        """Run ``sql`` (one ``IN ({})`` placeholder) over ``values`` in SQLite-sized batches."""
        rows: list[tuple] = []
        for batch in _batched(list(values), 500):
            rows += self._rows(sql.format(",".join("?" * len(batch))), (gen, *batch))
        return rows

    # Generations

    def generations(self) -> list[Generation]:
        """Every generation the manifest knows, oldest first."""
        rows = self._rows(
            "SELECT gen, collection, model, dimension, chromadb_version, state "
            "FROM generations ORDER BY gen"
        )
        return [Generation(*row) for row in rows]

    def active(self) -> Generation | None:
        """The generation that serves searches, if any."""
        return next((g for g in self.generations() if g.state == "active"), None)

    def new_generation(
        self, model: str, dimension: int, chromadb_version: str, state: str
    ) -> Generation:
        """Record a new generation (its collection is created by the caller afterwards)."""
        with self._transaction() as db:
            row = db.execute("SELECT COALESCE(MAX(gen), 0) + 1 FROM generations").fetchone()
            gen = int(row[0])
            name = f"nova-g{gen:06d}"
            db.execute(
                "INSERT INTO generations VALUES (?, ?, ?, ?, ?, ?, ?)",
                (gen, name, model, dimension, chromadb_version, state, time.time()),
            )
        return Generation(gen, name, model, dimension, chromadb_version, state)

    def activate(self, gen: int) -> None:
        """Make ``gen`` the serving generation and retire the others, in one transaction."""
        with self._transaction() as db:
            db.execute("UPDATE generations SET state = 'retired' WHERE state = 'active'")
            db.execute("UPDATE generations SET state = 'active' WHERE gen = ?", (gen,))

    def set_chromadb_version(self, gen: int, version: str) -> None:
        """Record the chromadb version that now writes this generation."""
        with self._transaction() as db:
            db.execute("UPDATE generations SET chromadb_version = ? WHERE gen = ?", (version, gen))

    def forget_generation(self, gen: int) -> None:
        """Delete a generation and everything recorded under it."""
        with self._transaction() as db:
            for table in ("chunks", "files", "generations"):
                db.execute(f"DELETE FROM {table} WHERE gen = ?", (gen,))

    # Files and chunks

    def files(self, gen: int) -> dict[str, FileRecord]:
        """Every note recorded under ``gen``, by note id."""
        rows = self._rows(
            "SELECT path, size, mtime_ns, content_hash, status, reason FROM files WHERE gen = ?",
            (gen,),
        )
        return {row[0]: FileRecord(*row) for row in rows}

    def chunk_ids(self, gen: int, paths: Iterable[str]) -> dict[str, list[str]]:
        """The chunk ids of each given note, in order."""
        result: dict[str, list[str]] = {}
        sql = "SELECT path, id FROM chunks WHERE gen = ? AND path IN ({}) ORDER BY path, seq"
        for path, chunk_id in self._rows_in(sql, gen, paths):
            result.setdefault(path, []).append(chunk_id)
        return result

    def ids_by_text(self, gen: int, text_hashes: Iterable[str]) -> dict[str, str]:
        """One stored chunk id for each text hash that some chunk of ``gen`` already has."""
        sql = (
            "SELECT text_hash, MIN(id) FROM chunks WHERE gen = ? AND text_hash IN ({}) "
            "GROUP BY text_hash"
        )
        return dict(self._rows_in(sql, gen, text_hashes))

    def all_chunk_ids(self, gen: int) -> set[str]:
        """Every chunk id recorded under ``gen``."""
        return {row[0] for row in self._rows("SELECT id FROM chunks WHERE gen = ?", (gen,))}

    def paths_of_chunks(self, gen: int, ids: Iterable[str]) -> set[str]:
        """The notes that own any of the given chunk ids."""
        sql = "SELECT DISTINCT path FROM chunks WHERE gen = ? AND id IN ({})"
        return {row[0] for row in self._rows_in(sql, gen, ids)}

    def apply(self, gen: int, updates: Sequence[FileUpdate], deleted: Iterable[str] = ()) -> None:
        """Record new note states and forget deleted notes, in one transaction."""
        with self._transaction() as db:
            now = time.time()
            for path in [u.record.path for u in updates] + list(deleted):
                db.execute("DELETE FROM chunks WHERE gen = ? AND path = ?", (gen, path))
                db.execute("DELETE FROM files WHERE gen = ? AND path = ?", (gen, path))
            for update in updates:
                r = update.record
                db.execute(
                    "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (gen, r.path, r.size, r.mtime_ns, r.content_hash, r.status, r.reason, now),
                )
                db.executemany(
                    "INSERT INTO chunks VALUES (?, ?, ?, ?, ?)",
                    [(gen, c.id, r.path, c.seq, c.text_hash) for c in update.chunks],
                )

    def touch(self, gen: int, path: str, size: int, mtime_ns: int) -> None:
        """Record a new stat for a note whose content did not change."""
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET size = ?, mtime_ns = ? WHERE gen = ? AND path = ?",
                (size, mtime_ns, gen, path),
            )

    def forget_files(self, gen: int, paths: Iterable[str]) -> None:
        """Drop notes from the manifest so the next scan indexes them again."""
        self.apply(gen, [], deleted=paths)

    # Read models for status and stats

    def counts(self, gen: int) -> dict[str, int]:
        """Notes (indexed or empty), chunks and skipped files recorded under ``gen``."""
        rows = self._rows(
            "SELECT status, COUNT(*) FROM files WHERE gen = ? GROUP BY status", (gen,)
        )
        by_status = dict(rows)
        chunks = self._rows("SELECT COUNT(*) FROM chunks WHERE gen = ?", (gen,))[0][0]
        return {
            "files": by_status.get("indexed", 0) + by_status.get("empty", 0),
            "chunks": int(chunks),
            "skipped": by_status.get("skipped", 0),
        }

    def problems(self, gen: int, status: str, limit: int) -> list[dict[str, str]]:
        """Notes with a reason recorded: skipped ones, or indexed ones with a warning."""
        rows = self._rows(
            "SELECT path, reason FROM files WHERE gen = ? AND status = ? AND reason IS NOT NULL "
            "ORDER BY indexed_at DESC, path LIMIT ?",
            (gen, status, limit),
        )
        return [{"path": path, "reason": reason} for path, reason in rows]

    def check_integrity(self) -> str:
        """Run SQLite's quick check; ``"ok"`` when the file is sound."""
        return str(self._rows("PRAGMA quick_check")[0][0])


def _batched(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
