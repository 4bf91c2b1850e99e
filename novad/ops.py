"""The operations the socket offers, each a coroutine ``(request, emit) -> result``.

Reads (``ping``, ``status``) answer from the daemon's memory and never touch disk, so
they stay prompt during the heaviest pass (invariant 4). ``stats`` and ``search`` run on
a reader thread. ``rebuild`` and ``wait`` hold a ticket until a pass covers them;
``rebuild`` streams the pass's progress meanwhile. The README documents each op.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from novad import __version__, protocol
from novad.errors import ProtocolError, StoreError
from novad.indexer import SourceMissing
from novad.manifest import NoteRef
from novad.protocol import MAX_K, MAX_QUERY_CHARS, Request, check_args, get_arg
from novad.server import Emit, Server
from novad.watcher import SETTLE_S

if TYPE_CHECKING:
    from novad.daemon import Daemon

_PROGRESS_EVERY_S = 0.25
_LIST_LIMIT = 50
# A text many notes hold (a template's boilerplate) names this many of them in its hit.
_PATHS_PER_HIT = 20


class Ops:
    """Binds the protocol's ops to one daemon."""

    def __init__(self, daemon: Daemon) -> None:
        """Keep the daemon whose state the ops read and change."""
        self._daemon = daemon
        self._process = psutil.Process()
        self._process.cpu_percent(None)

    def server(self) -> Server:
        """A server that dispatches to these ops."""
        handlers = {
            "ping": self.ping,
            "status": self.status,
            "stats": self.stats,
            "rebuild": self.rebuild,
            "search": self.search,
            "wait": self.wait,
        }
        cfg = self._daemon.config
        return Server(
            handlers, max_request_bytes=cfg.max_request_bytes, max_connections=cfg.max_connections
        )

    async def ping(self, req: Request, emit: Emit) -> dict[str, Any]:
        """Liveness: the daemon's version and pid."""
        check_args(req, set())
        return {"version": __version__, "pid": os.getpid()}

    async def status(self, req: Request, emit: Emit) -> dict[str, Any]:
        """What the daemon is doing now, from memory only."""
        check_args(req, set())
        d = self._daemon
        job = d.job
        embedder = d.embedder
        return {
            "state": d.current_state(),
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - d.started, 3),
            "source": str(d.config.source),
            "source_present": d.watcher.source_present,
            "state_dir": str(d.config.state_dir),
            "socket": str(d.config.socket_path),
            "model": embedder.name if embedder else d.config.model,
            "dimension": embedder.dimension if embedder else None,
            "generation": d.gen.gen if d.gen else None,
            **d.counts,
            "pending": d.pending,
            "watch": d.watch_figures(),
            "pass": job.progress.snapshot() if job else None,
            "last_pass": d.last_pass,
            "store_repair": d.store_repair,
        }

    async def stats(self, req: Request, emit: Emit) -> dict[str, Any]:
        """Store, pass, embedder and resource figures, from the databases."""
        check_args(req, set())
        self._require_ready()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._daemon.readers, self._stats)

    def _stats(self) -> dict[str, Any]:
        d = self._daemon
        assert d.manifest is not None and d.metrics is not None and d.gen is not None
        counters = d.metrics.counters()
        store = {
            "notes": d.counts["files"],
            "chunks": d.counts["chunks"],
            "vectors": d.counts["vectors"],
            "skipped": d.counts["skipped"],
            "store_bytes": _tree_bytes(d.config.chroma_dir),
            "state_dir_bytes": _tree_bytes(d.config.state_dir),
            "generation": d.gen.gen,
            "model": d.gen.model,
            "dimension": d.gen.dimension,
            "collection": d.gen.collection,
        }
        return {
            "store": store,
            "passes": d.metrics.summary(),
            "embedder": {
                "texts_embedded": counters.get("texts_embedded", 0),
                "chunks_reused": counters.get("chunks_reused", 0),
            },
            "resources": {
                "rss_bytes": int(self._process.memory_info().rss),
                "cpu_percent": self._process.cpu_percent(None),
            },
            "skipped_files": d.manifest.problems(d.gen.gen, "skipped", _LIST_LIMIT),
            "warnings": d.manifest.problems(d.gen.gen, "indexed", _LIST_LIMIT),
            "recent_passes": [r.as_dict() for r in d.metrics.recent(10)],
        }

    async def rebuild(self, req: Request, emit: Emit) -> dict[str, Any]:
        """Run, join or queue a pass over the whole tree, streaming its progress.

        With ``dry_run`` nothing is written: the reply is the plan of such a pass.
        """
        check_args(req, {"full", "dry_run"})
        full = get_arg(req, "full", bool, False)
        if get_arg(req, "dry_run", bool, False):
            self._require_ready()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._daemon.readers, self._plan, full)
        ticket = self._daemon.ticket(full=full, trigger="request")
        await emit({"admission": ticket.admission, "reason": ticket.reason})
        while not ticket.future.done():
            job = self._daemon.job
            if job is not None:
                await emit({"pass": job.progress.snapshot()})
            await asyncio.wait({ticket.future}, timeout=_PROGRESS_EVERY_S)
        return ticket.future.result()

    def _plan(self, full: bool) -> dict[str, Any]:
        d = self._daemon
        assert d.indexer is not None and d.metrics is not None and d.gen is not None
        rate = d.metrics.summary()["median_chunks_per_s"]
        try:
            return d.indexer.plan(d.gen, full=full, chunks_per_s=rate)
        except SourceMissing as exc:
            raise ProtocolError(protocol.SOURCE_MISSING, str(exc)) from None

    async def wait(self, req: Request, emit: Emit) -> dict[str, Any]:
        """Return once every change made before the request is searchable."""
        check_args(req, {"timeout_s"})
        timeout_s = get_arg(req, "timeout_s", float, 60.0)
        if not 0 < timeout_s < math.inf:
            raise ProtocolError(protocol.BAD_ARGS, "timeout_s must be a positive number")
        loop = asyncio.get_running_loop()
        started = loop.time()
        # A change made just before the request may not have reached the watcher yet: let
        # it arrive, then hand on what the debounce holds, so the pass below hashes it even
        # if its size and mtime look old. No debounce is sat out.
        await asyncio.sleep(min(SETTLE_S, timeout_s))
        self._daemon.watcher.release()
        ticket = self._daemon.ticket(full=False, trigger="wait")
        try:
            remaining = max(0.0, timeout_s - (loop.time() - started))
            await asyncio.wait_for(asyncio.shield(ticket.future), remaining)
        except TimeoutError:
            raise ProtocolError(
                protocol.TIMEOUT,
                f"the index has not caught up after {timeout_s:g} s; "
                "it is still working (see novactl status)",
            ) from None
        summary = ticket.future.result()
        if summary["outcome"] != "ok":
            raise ProtocolError(
                protocol.PASS_FAILED,
                f"the pass that covers this request ended "
                f"{summary['outcome']}: {summary['error'] or 'see the daemon log'}",
            )
        return {"waited_s": round(loop.time() - started, 3)}

    async def search(self, req: Request, emit: Emit) -> dict[str, Any]:
        """The ``k`` chunks nearest in meaning to ``query``."""
        check_args(req, {"query", "k"})
        query = get_arg(req, "query", str)
        k = get_arg(req, "k", int, 5)
        if not query.strip() or len(query) > MAX_QUERY_CHARS:
            raise ProtocolError(
                protocol.BAD_ARGS, f"query must be 1 to {MAX_QUERY_CHARS} characters of text"
            )
        if not 1 <= k <= MAX_K:
            raise ProtocolError(protocol.BAD_ARGS, f"k must be between 1 and {MAX_K}, got {k}")
        self._require_ready()
        loop = asyncio.get_running_loop()
        hits = await loop.run_in_executor(self._daemon.readers, self._search, query, k)
        return {"hits": hits}

    def _search(self, query: str, k: int) -> list[dict[str, Any]]:
        d = self._daemon
        assert d.manifest is not None
        vector = d.embedder.embed([query])[0]
        for _ in range(2):
            gen = d.gen
            assert gen is not None
            try:
                rows = d.store.query(gen.collection, vector, k) if d.counts["chunks"] else []
                return _hits(rows, d.manifest.notes_of_texts(gen.gen, [r["id"] for r in rows]))
            except StoreError:
                if d.gen is gen:
                    raise
        return []

    def _require_ready(self) -> None:
        d = self._daemon
        if d.gen is None or d.embedder is None:
            raise ProtocolError(
                protocol.NOT_READY,
                "the daemon is still starting (loading the model and the "
                "store); try again in a few seconds",
            )
        if d.indexer is not None and d.indexer.model_mismatch(d.gen):
            raise ProtocolError(
                protocol.NOT_READY,
                "the index is being rebuilt for a new embedding model; "
                "search works again when that pass ends (novactl status)",
            )


def _hits(rows: list[dict[str, Any]], notes: dict[str, list[NoteRef]]) -> list[dict[str, Any]]:
    """One hit per stored text: the first note that holds it, and the others' paths.

    A text no note holds any more (a pass deleted it after the query) is left out.
    """
    hits = []
    for row in rows:
        refs = notes.get(row["id"])
        if not refs:
            continue
        first = refs[0]
        hits.append(
            {
                "path": first.path,
                "heading": first.heading,
                "title": first.title,
                "text": row["document"] or "",
                "score": round(1.0 - row["distance"], 4),
                "tags": [t for t in first.tags.split(",") if t],
                "notes": len(refs),
                "paths": [ref.path for ref in refs[:_PATHS_PER_HIT]],
            }
        )
    return hits


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total
