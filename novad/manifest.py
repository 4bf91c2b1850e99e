"""The SQLite manifest: what the store holds, per generation, per note.

Tables: ``generations`` (collection name, model, dimension, chromadb version, state
``building``/``active``/``retired``), ``files`` (note id -> size, mtime, content hash,
status ``indexed``/``empty``/``skipped``, a reason, title and tags) and ``chunks`` (chunk
id -> note, position, heading path, hash of the embedded text).

The store holds one vector per distinct embedded text, under the text's hash; the
``chunks`` rows say which notes hold that text. So a text many notes share (a template's
boilerplate) is embedded and stored once, and a search hit names every note holding it.

Write order, which makes a kill at any instant repairable at the next start:

1. texts no chunk references yet are upserted into the store;
2. one manifest transaction records the notes and their new chunks;
3. texts no chunk references any more are deleted from the store.

A kill after 1 or 2 leaves store texts the manifest does not reference; start-up
reconciliation deletes them. A note whose texts are missing from the store is dropped
from the manifest at start-up, so it is indexed again. WAL mode with ``synchronous=NORMAL``
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
    title TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (gen, path)
);
CREATE TABLE IF NOT EXISTS chunks (
    gen INTEGER NOT NULL,
    id TEXT NOT NULL,
    path TEXT NOT NULL,
    seq INTEGER NOT NULL,
    text_hash TEXT NOT NULL,
    heading TEXT NOT NULL DEFAULT '',
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
    heading: str = ""


@dataclass(frozen=True)
class FileUpdate:
    """A note's new state: its record, its chunks in order, and what search shows of it."""

    record: FileRecord
    chunks: Sequence[ChunkRow]
    title: str = ""
    tags: str = ""


@dataclass(frozen=True)
class NoteRef:
    """A note that holds a text, as a search hit shows it."""

    path: str
    heading: str
    title: str
    tags: str


class Manifest:
    """The manifest database of one state directory."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the manifest at ``path``."""
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns a manifest written by an older novad lacks."""
        for table, column in (("files", "title"), ("files", "tags"), ("chunks", "heading")):
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(
                    f"ALTER TABLE {table} ADD COLUMN {column} TEXT NOT NULL DEFAULT ''"
                )

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

    def held(self, gen: int, paths: Iterable[str]) -> tuple[set[str], set[str]]:
        """The chunk ids and the text hashes the given notes hold, in one read."""
        sql = "SELECT id, text_hash FROM chunks WHERE gen = ? AND path IN ({})"
        rows = self._rows_in(sql, gen, paths)
        return {row[0] for row in rows}, {row[1] for row in rows}

    def known_texts(self, gen: int, text_hashes: Iterable[str]) -> set[str]:
        """Those of the given text hashes that some chunk of ``gen`` holds (so stored)."""
        sql = "SELECT DISTINCT text_hash FROM chunks WHERE gen = ? AND text_hash IN ({})"
        return {row[0] for row in self._rows_in(sql, gen, text_hashes)}

    def all_texts(self, gen: int) -> set[str]:
        """Every text hash some chunk of ``gen`` holds: the ids its store must have."""
        rows = self._rows("SELECT DISTINCT text_hash FROM chunks WHERE gen = ?", (gen,))
        return {row[0] for row in rows}

    def paths_of_texts(self, gen: int, text_hashes: Iterable[str]) -> set[str]:
        """The notes that hold any of the given texts."""
        sql = "SELECT DISTINCT path FROM chunks WHERE gen = ? AND text_hash IN ({})"
        return {row[0] for row in self._rows_in(sql, gen, text_hashes)}

    def notes_of_texts(self, gen: int, text_hashes: Iterable[str]) -> dict[str, list[NoteRef]]:
        """For each text, the notes holding it (path order), as search shows them."""
        sql = (
            "SELECT c.text_hash, c.path, c.heading, f.title, f.tags FROM chunks c "
            "JOIN files f ON f.gen = c.gen AND f.path = c.path "
            "WHERE c.gen = ? AND c.text_hash IN ({}) ORDER BY c.path, c.seq"
        )
        result: dict[str, list[NoteRef]] = {}
        for digest, path, heading, title, tags in self._rows_in(sql, gen, text_hashes):
            refs = result.setdefault(digest, [])
            if not refs or refs[-1].path != path:
                refs.append(NoteRef(path, heading, title, tags))
        return result

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
                    "INSERT INTO files (gen, path, size, mtime_ns, content_hash, status, reason,"
                    " indexed_at, title, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        gen,
                        r.path,
                        r.size,
                        r.mtime_ns,
                        r.content_hash,
                        r.status,
                        r.reason,
                        now,
                        update.title,
                        update.tags,
                    ),
                )
                db.executemany(
                    "INSERT INTO chunks (gen, id, path, seq, text_hash, heading)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(gen, c.id, r.path, c.seq, c.text_hash, c.heading) for c in update.chunks],
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
        chunks, texts = self._rows(
            "SELECT COUNT(*), COUNT(DISTINCT text_hash) FROM chunks WHERE gen = ?", (gen,)
        )[0]
        return {
            "files": by_status.get("indexed", 0) + by_status.get("empty", 0),
            "chunks": int(chunks),
            "vectors": int(texts),
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
