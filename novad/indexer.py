"""Passes: bring a generation in step with the notes on disk.

An *incremental* pass re-checks a set of notes (or the whole tree) against the manifest of
the active generation; a *full* pass builds a new generation from scratch and switches to
it only when complete (invariant 2). Both run in a worker thread; the event loop only
reads ``Progress``.

Work is proportional to change (invariant 3): an unchanged note costs a stat; a note whose
bytes did not change costs a read and a hash; chunk ids derive from the note id and the
chunk's content, so unchanged chunks of an edited note keep their ids and are not
rewritten. The store holds one vector per distinct embedded text, under the text's hash:
a new chunk whose text some note already holds (a renamed or moved note, a template's
boilerplate) costs no embedding and no write, and identical texts are embedded once per
pass. Because store ids are content-derived, a text is only deleted once no note holds
it, and never deleted and re-added under the same id within a write (TRAPS C04).

The write order is the manifest's (see ``novad.manifest``): store upsert, manifest commit,
store delete; ``reconcile`` repairs whatever a kill left between those steps.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from novad.chunker import Chunk, TokenCounter, chunk_note
from novad.config import Config
from novad.decoding import decode_note
from novad.embedder import Embedder
from novad.errors import NoteError, NovaError
from novad.manifest import ChunkRow, FileRecord, FileUpdate, Generation, Manifest
from novad.metrics import PassRecord
from novad.parser import parse_note
from novad.scanner import expand_changes, passes_a_link, walk_notes
from novad.store import ChunkEntry, Store, chromadb_version

log = logging.getLogger(__name__)

# Small enough that progress and the manifest advance every few seconds of embedding,
# and that a kill loses at most this much work.
_FLUSH_CHUNKS = 32
_FLUSH_FILES = 32
_PLAN_EXAMPLES = 10


class Cancelled(Exception):
    """The pass was asked to stop at its next safe point."""


class _Preempted(Exception):
    """A note was saved while a batch was being embedded: it goes first, then the batch."""


class Urgent:
    """Paths saved while a pass runs, taken up by the pass at its next safe point.

    The daemon puts small change sets here while a pass works through a backlog (a burst,
    a first index, a full rebuild), so that a note just saved is searchable as soon as on
    an idle daemon. Safe points come between notes, before each write batch, and between
    embedding calls; what a pass did not take up goes back to the daemon's queue.
    """

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._paths: set[Path] = set()

    def put(self, paths: set[Path]) -> None:
        """Add changed paths (from the event loop)."""
        with self._lock:
            self._paths |= paths

    def take(self) -> set[Path]:
        """Remove and return every waiting path."""
        with self._lock:
            paths, self._paths = self._paths, set()
        return paths

    def __bool__(self) -> bool:
        """Whether paths are waiting (a cheap, lock-free look)."""
        return bool(self._paths)

    def __len__(self) -> int:
        """How many paths are waiting."""
        return len(self._paths)


class SourceMissing(NovaError):
    """The source folder vanished during a pass; nothing is deleted because of it."""


@dataclass
class Progress:
    """Live figures of the running pass; written by the worker, read by the loop."""

    kind: str
    trigger: str
    phase: str = "scanning"
    done: int = 0
    total: int = 0
    chunks_embedded: int = 0
    rss_bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    def snapshot(self) -> dict[str, Any]:
        """The figures as a plain map for the wire."""
        return {
            "kind": self.kind,
            "trigger": self.trigger,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "chunks_embedded": self.chunks_embedded,
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "rss_bytes": self.rss_bytes,
        }


@dataclass
class _Prepared:
    """A note read, parsed and chunked, ready to be written."""

    update: FileUpdate
    chunks: list[Chunk]


@dataclass
class _Batch:
    notes: list[_Prepared] = field(default_factory=list)
    chunk_count: int = 0

    def add(self, note: _Prepared) -> None:
        self.notes.append(note)
        self.chunk_count += len(note.chunks)

    def full(self) -> bool:
        return self.chunk_count >= _FLUSH_CHUNKS or len(self.notes) >= _FLUSH_FILES


_UNCHANGED = "unchanged"
_GONE = "gone"
_RETRY = "retry"


def text_hash(text: str) -> str:
    """Hash of an embedded text; equal texts share a vector."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def chunk_id(path: str, chunk: Chunk, tags: str, occurrence: int) -> str:
    """Deterministic id of a chunk: its note, what is embedded and stored, and its repeat."""
    key = "\0".join((path, chunk.embed_text, chunk.text, chunk.heading, tags, str(occurrence)))
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


class Indexer:
    """Runs passes; one at a time, in a worker thread, owned by the daemon."""

    def __init__(
        self,
        config: Config,
        manifest: Manifest,
        store: Store,
        embedder: Embedder,
        counter: TokenCounter,
    ) -> None:
        """Wire the pass to its parts."""
        self._config = config
        self._manifest = manifest
        self._store = store
        self._embedder = embedder
        self._counter = counter
        self._process = psutil.Process()
        self.cancel = threading.Event()
        self.urgent = Urgent()
        # During a pass: the generations an urgent save is written to (serving first),
        # the notes already brought in step that way, and those to try again later.
        self._targets: list[Generation] = []
        self._urgent_done: set[str] = set()
        self._urgent_retry: set[str] = set()
        self._in_urgent = False
        self.after_flush: Callable[[Generation], None] | None = None
        self.on_switch: Callable[[Generation], None] | None = None

    # Generations

    def ensure_active(self) -> Generation:
        """Return the serving generation, creating the first one on a fresh state dir."""
        active = self._manifest.active()
        if active is not None:
            return active
        gen = self._manifest.new_generation(
            self._embedder.name, self._embedder.dimension, chromadb_version(), "active"
        )
        self._store.create(gen.collection, gen.model, gen.dimension)
        log.info("created generation %d (collection %s)", gen.gen, gen.collection)
        return gen

    def model_mismatch(self, gen: Generation) -> str | None:
        """Why ``gen``'s vectors cannot serve the configured model, or None."""
        if (gen.model, gen.dimension) == (self._embedder.name, self._embedder.dimension):
            return None
        return (
            f"generation {gen.gen} holds vectors of {gen.model} ({gen.dimension} dims), "
            f"the configured model is {self._embedder.name} ({self._embedder.dimension} dims)"
        )

    def reconcile(self) -> Generation:
        """Repair what a kill left behind; return the serving generation.

        Drops unfinished and retired generations, deletes store chunks the manifest does
        not reference, and forgets notes whose chunks are missing so they are re-indexed.
        """
        for gen in self._manifest.generations():
            if gen.state != "active":
                log.info("dropping leftover generation %d (%s)", gen.gen, gen.state)
                self._store.drop(gen.collection)
                self._manifest.forget_generation(gen.gen)
        active = self.ensure_active()
        known = {g.collection for g in self._manifest.generations()}
        for name in set(self._store.names()) - known:
            log.info("dropping collection %s that no generation records", name)
            self._store.drop(name)
        self._note_version_change(active)
        if not self._store.exists(active.collection):
            log.warning("collection %s is missing; re-indexing every note", active.collection)
            self._store.create(active.collection, active.model, active.dimension)
        self._reconcile_chunks(active)
        return active

    def _note_version_change(self, gen: Generation) -> None:
        current = chromadb_version()
        if gen.chromadb_version != current:
            log.warning(
                "generation %d was written by chromadb %s and is now opened by chromadb %s",
                gen.gen,
                gen.chromadb_version,
                current,
            )
            self._manifest.set_chromadb_version(gen.gen, current)

    def _reconcile_chunks(self, gen: Generation) -> None:
        stored = self._store.all_ids(gen.collection)
        recorded = self._manifest.all_texts(gen.gen)
        orphans = stored - recorded
        missing = recorded - stored
        if orphans:
            log.info("deleting %d stored texts that no note holds", len(orphans))
            self._store.delete(gen.collection, sorted(orphans))
        if missing:
            paths = self._manifest.paths_of_texts(gen.gen, missing)
            log.info(
                "%d texts of %d notes are missing from the store; re-indexing them",
                len(missing),
                len(paths),
            )
            self._manifest.forget_files(gen.gen, paths)

    # Plans

    def plan(self, gen: Generation, *, full: bool, chunks_per_s: float | None) -> dict[str, Any]:
        """What a pass would do now, without writing anything (``rebuild --dry-run``).

        Reads only what the pass itself would read: notes whose size or mtime changed (every
        note for a full pass). Renames are new notes whose bytes equal a vanished note's.
        """
        self._check_source()
        source = self._config.source
        on_disk = sorted(walk_notes(source, self._config.notes))
        known = {} if full else self._manifest.files(gen.gen)
        files: dict[str, list[str]] = {k: [] for k in ("add", "change", "rename", "delete", "skip")}
        rows: dict[str, list[ChunkRow]] = {}
        added: dict[str, str] = {}
        unchanged = 0
        for rel in on_disk:
            record = known.get(rel)
            verdict = self._plan_note(rel, record, rows)
            if verdict is None:
                unchanged += 1
            elif verdict == "skip":
                files["skip"].append(rel)
            elif record is None:
                added[rel] = verdict
            else:
                files["change"].append(rel)
        deleted = sorted(set(known) - set(on_disk))
        vanished = {known[r].content_hash: r for r in deleted if known[r].content_hash}
        moved_away = set()
        for rel, digest in added.items():
            old = vanished.pop(digest, None)
            files["rename" if old else "add"].append(f"{old} -> {rel}" if old else rel)
            if old:
                moved_away.add(old)
        files["delete"] = [rel for rel in deleted if rel not in moved_away]
        chunks = self._plan_chunks(gen, rows, deleted, full)
        estimate = chunks["embed"] / chunks_per_s if chunks_per_s else None
        return {
            "kind": "full" if full else "incremental",
            "generation": gen.gen,
            "files": {k: len(v) for k, v in files.items()} | {"unchanged": unchanged},
            "examples": {k: v[:_PLAN_EXAMPLES] for k, v in files.items()},
            "chunks": chunks,
            "chunks_per_s": chunks_per_s,
            "estimate_s": round(estimate, 3) if estimate is not None else None,
        }

    def _plan_note(
        self, rel: str, record: FileRecord | None, rows: dict[str, list[ChunkRow]]
    ) -> str | None:
        """None if the pass would leave ``rel`` alone, "skip", or its content hash."""
        path = self._config.source / rel
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                return None  # a pipe or device named like a note is never read
            if record and _same_stat(record, st) and not _unread(record):
                return None
            if st.st_size > self._config.max_file_bytes:
                return "skip"
            data = read_regular(path)
        except NotARegularFile:
            return None
        except OSError:
            return "skip"
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if record and record.content_hash == digest:
            return None
        try:
            rows[rel] = list(self._prepare(rel, st, digest, data, quiet=True).update.chunks)
        except NoteError:
            return "skip"
        return digest

    def _plan_chunks(
        self, gen: Generation, rows: dict[str, list[ChunkRow]], deleted: list[str], full: bool
    ) -> dict[str, int]:
        old = {} if full else self._manifest.chunk_ids(gen.gen, [*rows, *deleted])
        old_ids = {i for ids in old.values() for i in ids}
        fresh = [row for note in rows.values() for row in note if row.id not in old_ids]
        have = set() if full else self._manifest.known_texts(gen.gen, {r.text_hash for r in fresh})
        embed: set[str] = set()
        reuse = 0
        for row in fresh:
            if row.text_hash in have or row.text_hash in embed:
                reuse += 1
            else:
                embed.add(row.text_hash)
        new_ids = {row.id for note in rows.values() for row in note}
        return {
            "embed": len(embed),
            "reuse": reuse,
            "keep": sum(len(note) for note in rows.values()) - len(fresh),
            "delete": len(old_ids - new_ids),
        }

    # Passes

    def incremental(
        self,
        gen: Generation,
        changed: Iterable[Path] | None,
        rec: PassRecord,
        progress: Progress,
        *,
        recheck: Iterable[Path] = (),
        verify: bool = False,
    ) -> set[str]:
        """Bring ``gen`` in step for the changed paths (None: the whole tree).

        Size and mtime are trusted to mean "unchanged", except for paths a watcher event
        named (``changed``, ``recheck``), which are hashed, and everywhere when ``verify``.
        Returns the notes that changed while being read, to be tried again shortly.
        """
        if not self._in_urgent:
            self._begin([gen])
        self._check_source()
        known = self._manifest.files(gen.gen)
        source, notes = self._config.source, self._config.notes
        suspects = expand_changes(source, recheck, known, notes)
        if changed is None:
            on_disk = set(walk_notes(source, notes))
            # Most recently modified first: after a restart or during a first index, the
            # notes someone just worked on are searchable soonest.
            candidates = _newest_first(source, on_disk | set(known))
        else:
            candidates = sorted(expand_changes(source, changed, known, notes))
            suspects.update(candidates)
        untrusted = set(candidates) if verify else suspects
        gone = self._index(gen, candidates, known, rec, progress, untrusted=untrusted)
        retry = gone.pop(_RETRY, set())
        # Every note gone at once from a folder left empty (a whole-tree rescan, or events
        # for every note) looks like an unmounted share, not a user deleting every note:
        # keep the index. A folder that still holds files (notes a pattern now excludes,
        # other files) is not a mount point left behind.
        if known and len(gone[_GONE]) >= len(known) and _looks_unmounted(source):
            raise SourceMissing(
                f"source folder {source} is empty but the index has {len(known)} notes; "
                "treating it as an unmounted share and keeping the index. If every note "
                "really was deleted, run: novactl rebuild --full"
            )
        self._delete(gen, sorted(gone[_GONE]), rec)
        return retry if self._in_urgent else retry | self._urgent_retry

    def _begin(self, targets: list[Generation]) -> None:
        self._targets = targets
        self._urgent_done = set()
        self._urgent_retry = set()

    def _serve_urgent(self, batch: _Batch | None, rec: PassRecord, progress: Progress) -> None:
        """Bring notes saved meanwhile in step first, in every generation this pass writes.

        The serving generation comes first, so the note is searchable now; a generation
        being built gets it too. Notes the running pass prepared but has not written yet
        are dropped from ``batch`` when an urgent save covered them: theirs is older.
        """
        if self._in_urgent or not self.urgent:
            return
        paths = self.urgent.take()
        self._in_urgent = True
        try:
            for gen in self._targets:
                log.debug("taking up %d path(s) saved during the pass first", len(paths))
                self._urgent_retry |= self.incremental(
                    gen, paths, rec, Progress("incremental", "watch")
                )
        finally:
            self._in_urgent = False
        if batch is None:
            return
        kept = [n for n in batch.notes if n.update.record.path not in self._urgent_done]
        stale = len(batch.notes) - len(kept)
        if stale:
            rec.files_changed -= stale
            progress.done += stale
            batch.notes = kept
            batch.chunk_count = sum(len(n.chunks) for n in kept)

    def _check_source(self) -> None:
        source = self._config.source
        if not os.path.isdir(source):
            raise SourceMissing(
                f"source folder {source} is missing; the index is kept as it is and brought "
                "up to date when the folder is back"
            )
        if not os.access(source, os.R_OK | os.X_OK):
            raise SourceMissing(
                f"source folder {source} cannot be read by this user; the index is kept as it "
                "is. Fix the folder's permissions"
            )

    def full(self, rec: PassRecord, progress: Progress) -> tuple[Generation, set[str]]:
        """Build a new generation from every note; switch to it only when complete."""
        new = self._manifest.new_generation(
            self._embedder.name, self._embedder.dimension, chromadb_version(), "building"
        )
        self._store.create(new.collection, new.model, new.dimension)
        try:
            self._check_source()
            serving = self._manifest.active()
            self._begin([g for g in (serving, new) if g is not None])
            candidates = list(walk_notes(self._config.source, self._config.notes))
            outcome = self._index(new, candidates, {}, rec, progress, untrusted=set())
        except BaseException:
            self._abandon(new)
            raise
        old = self._manifest.active()
        self._manifest.activate(new.gen)
        log.info("generation %d is now serving (collection %s)", new.gen, new.collection)
        if self.on_switch is not None:
            self.on_switch(new)
        if old is not None:
            self._store.drop(old.collection)
            self._manifest.forget_generation(old.gen)
        return new, outcome.get(_RETRY, set()) | self._urgent_retry

    def _abandon(self, gen: Generation) -> None:
        log.info("abandoning unfinished generation %d", gen.gen)
        try:
            self._store.drop(gen.collection)
            self._manifest.forget_generation(gen.gen)
        except Exception:
            log.exception("could not clean up generation %d; it is dropped at next start", gen.gen)

    def _index(
        self,
        gen: Generation,
        candidates: list[str],
        known: dict[str, FileRecord],
        rec: PassRecord,
        progress: Progress,
        *,
        untrusted: set[str],
    ) -> dict[str, set[str]]:
        if self._in_urgent:
            self._urgent_done.update(candidates)
        else:
            progress.total = len(candidates)
            rec.files_scanned = len(candidates)
        progress.phase = "indexing"
        self._sample_memory(rec, progress)
        links: dict[str, bool] = {}
        notes = self._config.notes
        outcome: dict[str, set[str]] = {_GONE: set(), _RETRY: set()}
        batch = _Batch()
        for rel in candidates:
            if self.cancel.is_set():
                raise Cancelled()
            if self.urgent and not self._in_urgent:
                self._serve_urgent(batch, rec, progress)
            if rel in self._urgent_done and not self._in_urgent:
                progress.done += 1  # brought in step by an urgent save meanwhile
                continue
            if passes_a_link(self._config.source, rel, links) or not notes.is_note(rel):
                # Out of bounds: behind a link, or excluded since it was indexed.
                result: _Prepared | str = _GONE if rel in known else _UNCHANGED
            else:
                result = self._examine(gen, rel, known.get(rel), rel not in untrusted, rec)
            if isinstance(result, _Prepared):
                rec.files_changed += 1
                rec.files_failed += result.update.record.status == "skipped"
                batch.add(result)
                if batch.full():
                    self._flush(gen, batch, rec, progress)
                    batch = _Batch()
                continue
            if result in outcome:
                outcome[result].add(rel)
            progress.done += 1
        self._flush(gen, batch, rec, progress)
        return outcome

    def _examine(
        self,
        gen: Generation,
        rel: str,
        record: FileRecord | None,
        trust_stat: bool,
        rec: PassRecord,
    ) -> _Prepared | str:
        path = self._config.source / rel
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return _GONE if record else _UNCHANGED
        except OSError as exc:
            return self._skipped(rel, 0, 0, "", f"cannot access the file: {exc.strerror}", record)
        if not stat.S_ISREG(st.st_mode):
            return _GONE if record else _UNCHANGED
        if trust_stat and record and _same_stat(record, st) and not _unread(record):
            return _UNCHANGED
        if st.st_size > self._config.max_file_bytes:
            reason = (
                f"file is {st.st_size} bytes, over max_file_bytes={self._config.max_file_bytes};"
                " raise the setting to index it"
            )
            return self._skipped(rel, st.st_size, st.st_mtime_ns, "", reason, record)
        return self._read(gen, rel, path, st, record, rec)

    def _read(
        self,
        gen: Generation,
        rel: str,
        path: Path,
        st: os.stat_result,
        record: FileRecord | None,
        rec: PassRecord,
    ) -> _Prepared | str:
        try:
            data = read_regular(path)
            rec.files_read += 1
            after = os.lstat(path)
        except (FileNotFoundError, NotARegularFile):
            return _GONE if record else _UNCHANGED
        except OSError as exc:
            reason = f"cannot read the file: {exc.strerror}"
            return self._skipped(rel, st.st_size, st.st_mtime_ns, "", reason, record)
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            log.debug("%s changed while being read; trying again later", rel)
            return _RETRY
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if record and record.content_hash == digest:
            self._manifest.touch(gen.gen, rel, st.st_size, st.st_mtime_ns)
            return _UNCHANGED
        try:
            return self._prepare(rel, st, digest, data)
        except NoteError as exc:
            return self._skipped(rel, st.st_size, st.st_mtime_ns, digest, exc.reason, record)

    def _prepare(
        self, rel: str, st: os.stat_result, digest: str, data: bytes, *, quiet: bool = False
    ) -> _Prepared:
        decoded = decode_note(data)
        note = parse_note(decoded.text, rel)
        chunks = chunk_note(note, self._counter, target_tokens=self._config.chunk_target_tokens)
        warnings = [w for w in (decoded.warning, *note.warnings) if w]
        for warning in warnings if not quiet else ():
            log.warning("%s: %s", rel, warning)
        tags = ",".join(note.tags)
        rows = _chunk_rows(rel, chunks, tags)
        status = "indexed" if chunks else "empty"
        record = FileRecord(
            rel, st.st_size, st.st_mtime_ns, digest, status, "; ".join(warnings) or None
        )
        return _Prepared(FileUpdate(record, rows, note.title, tags), chunks)

    def _skipped(
        self,
        rel: str,
        size: int,
        mtime_ns: int,
        digest: str,
        reason: str,
        record: FileRecord | None,
    ) -> _Prepared | str:
        new = FileRecord(rel, size, mtime_ns, digest, "skipped", reason)
        if record == new:
            return _UNCHANGED
        log.warning("skipped %s: %s", rel, reason)
        return _Prepared(FileUpdate(new, []), [])

    def _flush(self, gen: Generation, batch: _Batch, rec: PassRecord, progress: Progress) -> None:
        vectors: dict[str, np.ndarray] = {}
        while True:
            # Vectors embedded before a preemption are kept; what the batch needs is worked
            # out again, since the urgent save may have written texts it meant to.
            self._serve_urgent(batch, rec, progress)
            if not batch.notes:
                return
            paths = [n.update.record.path for n in batch.notes]
            old_ids, old_texts = self._manifest.held(gen.gen, paths)
            fresh, reused = self._fresh_texts(gen, batch, old_ids)
            try:
                entries = self._embed(fresh, rec, progress, vectors)
            except _Preempted:
                continue
            break
        rec.chunks_reused += reused
        self._store.upsert(gen.collection, entries)
        self._manifest.apply(gen.gen, [n.update for n in batch.notes])
        new_ids = {row.id for n in batch.notes for row in n.update.chunks}
        rec.chunks_deleted += len(old_ids - new_ids)
        self._drop_unheld(gen, old_texts)
        progress.done += len(batch.notes)
        self._sample_memory(rec, progress)
        if self.after_flush is not None:
            self.after_flush(gen)

    def _fresh_texts(
        self, gen: Generation, batch: _Batch, old_ids: set[str]
    ) -> tuple[dict[str, Chunk], int]:
        """The batch's texts the store lacks, by hash, and how many new chunks reuse one.

        A text some note of this generation holds (a moved note, a repeated paragraph, an
        earlier batch of this pass) is already stored: one vector per text.
        """
        new_rows = [
            (row, chunk)
            for note in batch.notes
            for row, chunk in zip(note.update.chunks, note.chunks, strict=True)
            if row.id not in old_ids
        ]
        wanted = {row.text_hash: chunk for row, chunk in new_rows}
        stored = self._manifest.known_texts(gen.gen, wanted)
        fresh = {digest: chunk for digest, chunk in wanted.items() if digest not in stored}
        return fresh, len(new_rows) - len(fresh)

    def _embed(
        self,
        fresh: dict[str, Chunk],
        rec: PassRecord,
        progress: Progress,
        vectors: dict[str, np.ndarray],
    ) -> list[ChunkEntry]:
        """Embed each fresh text once, in batches, keeping the vectors in ``vectors``.

        Between batches a stop request is honoured (``Cancelled``) and a note saved
        meanwhile preempts the rest (``_Preempted``); ``vectors`` keeps what was done.
        """
        todo = [(digest, chunk) for digest, chunk in fresh.items() if digest not in vectors]
        progress.phase = "embedding"
        step = self._config.embed_batch_size
        for start in range(0, len(todo), step):
            if self.cancel.is_set():
                raise Cancelled()
            if start and self.urgent and not self._in_urgent:
                raise _Preempted()
            part = todo[start : start + step]
            done = self._embedder.embed([chunk.embed_text for _, chunk in part])
            vectors.update((digest, vector) for (digest, _), vector in zip(part, done, strict=True))
            progress.chunks_embedded += len(part)
            rec.texts_embedded += len(part)
            rec.chunks_embedded += len(part)
        progress.phase = "indexing"
        return [ChunkEntry(digest, vectors[digest], chunk.text) for digest, chunk in fresh.items()]

    def _drop_unheld(self, gen: Generation, texts: set[str]) -> None:
        """Delete from the store those of ``texts`` that no note holds any more."""
        unheld = texts - self._manifest.known_texts(gen.gen, texts)
        self._store.delete(gen.collection, sorted(unheld))

    def _delete(self, gen: Generation, paths: list[str], rec: PassRecord) -> None:
        if not paths:
            return
        # An unmounted share or a folder being replaced is not the user deleting notes.
        self._check_source()
        ids, texts = self._manifest.held(gen.gen, paths)
        self._manifest.apply(gen.gen, [], deleted=paths)
        self._drop_unheld(gen, texts)
        rec.files_deleted += len(paths)
        rec.chunks_deleted += len(ids)

    def _sample_memory(self, rec: PassRecord, progress: Progress) -> None:
        rss = int(self._process.memory_info().rss)
        progress.rss_bytes = rss
        rec.peak_rss_bytes = max(rec.peak_rss_bytes, rss)


def _newest_first(source: Path, rels: set[str]) -> list[str]:
    """``rels`` by modification time, newest first (gone ones last), then by name."""

    def age(rel: str) -> tuple[int, str]:
        try:
            return (-os.lstat(source / rel).st_mtime_ns, rel)
        except OSError:
            return (0, rel)

    return sorted(rels, key=age)


def _looks_unmounted(source: Path) -> bool:
    """Whether the folder holds nothing but hidden folders: a mount point with its share away."""
    try:
        with os.scandir(source) as entries:
            return all(e.name.startswith(".") and e.is_dir(follow_symlinks=False) for e in entries)
    except OSError:
        return True


def _same_stat(record: FileRecord, st: os.stat_result) -> bool:
    return (record.size, record.mtime_ns) == (st.st_size, st.st_mtime_ns)


def _unread(record: FileRecord) -> bool:
    """A note skipped before its bytes could be read: worth trying again (chmod, unmount)."""
    return record.status == "skipped" and not record.content_hash


class NotARegularFile(Exception):
    """The path turned out to be a pipe, device or socket between its stat and its open."""


def read_regular(path: Path) -> bytes:
    """Read a regular file whole; never block on a pipe that was put in its place.

    Raises:
        NotARegularFile: the path is not a regular file (it was replaced after its stat).
        OSError: it cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise NotARegularFile(str(path))
        return handle.read()


def _chunk_rows(rel: str, chunks: list[Chunk], tags: str) -> list[ChunkRow]:
    seen: dict[str, int] = {}
    rows = []
    for seq, chunk in enumerate(chunks):
        key = chunk.embed_text + "\0" + chunk.text
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        digest = text_hash(chunk.embed_text)
        rows.append(ChunkRow(chunk_id(rel, chunk, tags, occurrence), seq, digest, chunk.heading))
    return rows
