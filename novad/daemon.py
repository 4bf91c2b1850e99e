"""The daemon's lifecycle and its scheduler of passes.

Start-up, in order: own the state dir (lock), own the socket path (lock, stale check),
start serving (``status`` answers from here on, state ``starting``), load the embedder and
open the store and manifest off the loop, reconcile, queue a whole-tree rescan, start the
watcher. Then one pass at a time runs in a worker thread while the loop keeps answering.

Shutdown, in order: stop accepting connections, ask the running pass to stop at its next
safe point and wait for it up to ``shutdown_timeout_s``, close the databases, remove the
socket, release the locks.

Requests that need a pass (``rebuild``, ``wait``) hold a ticket: the sequence number of
the moment they were made. A whole-tree pass that *started* after the ticket (or a full
pass already running, for a full rebuild) answers it, so every change made before the
request is covered by the answer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from novad import __version__, lifecycle
from novad.config import Config
from novad.errors import NovaError
from novad.indexer import Cancelled, Indexer, Progress, SourceMissing
from novad.lifecycle import EXIT_FAILED, EXIT_NOT_READY
from novad.manifest import Generation, Manifest
from novad.metrics import Metrics, PassRecord
from novad.ops import Ops
from novad.probe import probe
from novad.server import Server
from novad.watcher import Watcher

log = logging.getLogger(__name__)

# Longest the store probe may take; a probe that hangs proves nothing either way.
_PROBE_S = 120.0
# A change set this small, arriving while a pass runs, is someone saving notes: the pass
# takes it up at once (``Urgent``). A larger one is a burst and waits for the next pass.
_URGENT_MAX_PATHS = 32
# Rescans after lost events: the first at once, then at growing intervals while losses
# keep coming, so a folder that keeps overflowing cannot keep a core busy.
_LOST_BACKOFF_MAX_S = 300.0
_LOST_CALM_S = 60.0


@dataclass
class Ticket:
    """A request waiting for a pass to cover it."""

    seq: int
    full: bool
    future: asyncio.Future[dict[str, Any]]
    admission: str = "started"
    reason: str = "no pass was running; this request starts one"


@dataclass
class Job:
    """The pass about to run: its kind, trigger, and what it covers."""

    kind: str
    trigger: str
    start_seq: int
    paths: set[Path] | None = None
    recheck: set[Path] = field(default_factory=set)
    record: PassRecord = field(init=False)
    progress: Progress = field(init=False)

    def __post_init__(self) -> None:
        self.record = PassRecord(self.kind, self.trigger, started_at=time.time())
        self.progress = Progress(self.kind, self.trigger)

    @property
    def whole_tree(self) -> bool:
        return self.paths is None


class Daemon:
    """One running novad: owns the locks, the socket, the store and the pass scheduler."""

    def __init__(self, config: Config) -> None:
        """Prepare the daemon; nothing is opened until ``run``."""
        self.config = config
        self.started = time.monotonic()
        self.state = "starting"
        self.ready = False
        self.manifest: Manifest | None = None
        self.metrics: Metrics | None = None
        self.indexer: Indexer | None = None
        self.embedder: Any = None
        self.store: Any = None
        self.gen: Generation | None = None
        self.counts = {"files": 0, "chunks": 0, "vectors": 0, "skipped": 0}
        self.job: Job | None = None
        self.last_pass: dict[str, Any] | None = None
        self.store_repair: str | None = None
        self.watcher = Watcher(
            config.source,
            debounce_ms=config.debounce_ms,
            max_wait_ms=config.max_wait_ms,
            notes=config.notes,
            on_changes=self._on_changes,
            on_root_back=self._on_root_back,
            on_lost=self._on_lost,
            force_polling=config.watch_mode == "polling",
            poll_interval_ms=config.poll_interval_ms,
            ignored=(
                config.state_dir,
                config.socket_path,
                config.socket_path.with_name(config.socket_path.name + ".lock"),
            ),
        )
        self._seq = 0
        self._pending: set[Path] = set()
        self._rescan_wanted: tuple[int, str] | None = None
        self._rescan_owed = False
        self._full_wanted: tuple[int, str] | None = None
        self._tickets: list[Ticket] = []
        self._lost_delay_s = 0.0
        self._lost_at = -_LOST_CALM_S
        self._lost_timer: asyncio.TimerHandle | None = None
        self.rescans = {"periodic": 0, "overflow": 0, "restart": 0, "fallback": 0}
        self._work = asyncio.Event()
        self._stop = asyncio.Event()
        self._pass_thread = ThreadPoolExecutor(1, thread_name_prefix="nova-pass")
        self.readers = ThreadPoolExecutor(2, thread_name_prefix="nova-read")
        self._locks = [
            lifecycle.PathLock(config.lock_path, f"state dir {config.state_dir}"),
            lifecycle.PathLock(
                config.socket_path.with_name(config.socket_path.name + ".lock"),
                f"socket {config.socket_path}",
            ),
        ]

    # Lifecycle

    async def run(self) -> int:
        """Run until SIGTERM or SIGINT and return the exit code.

        Raises:
            NovaError: the state dir or socket cannot be owned (nothing was started).
        """
        lifecycle.prepare_dir(self.config.state_dir, 0o700)
        # Root's socket folder must be reachable by the socket's group; a user's stays private.
        lifecycle.prepare_dir(self.config.socket_path.parent, 0o755 if os.geteuid() == 0 else 0o700)
        for lock in self._locks:
            lock.acquire()
        ops = Ops(self)
        sock = lifecycle.bind_socket(self.config.socket_path)
        server = ops.server()
        await server.start(sock)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
        if not self.config.source.is_dir():
            log.warning(
                "source folder %s does not exist (yet); the index is kept as it is "
                "and the folder is indexed once it appears",
                self.config.source,
            )
        log.info(
            "novad %s started: source %s, state dir %s, socket %s, model %s",
            __version__,
            self.config.source,
            self.config.state_dir,
            self.config.socket_path,
            self.config.model,
        )
        code = 0
        try:
            await self._serve(server)
        except NovaError as exc:
            log.error("%s", exc)
            code = EXIT_FAILED if self.ready else EXIT_NOT_READY
        finally:
            await self._shut_down(server)
        return code

    async def _serve(self, server: Server) -> None:
        opened: asyncio.Future[None] = asyncio.wrap_future(self._pass_thread.submit(self._open))
        stopped: asyncio.Future[bool] = asyncio.ensure_future(self._stop.wait())
        either: list[asyncio.Future[Any]] = [opened, stopped]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not opened.done():
            return
        stopped.cancel()
        opened.result()
        self.ready = True
        self.request_rescan("startup")
        watching = asyncio.ensure_future(self.watcher.run(self._stop))
        passes = asyncio.ensure_future(self._pass_loop())
        periodic = asyncio.ensure_future(self._periodic_rescans())
        await self._stop.wait()
        periodic.cancel()
        log.info("shutting down")
        self.state = "stopping"
        # Stop accepting, let the pass reach a safe point and answer its waiters, then close.
        server.stop_accepting()
        await self._drain(passes)
        await server.close()
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)

    async def _drain(self, passes: asyncio.Future[None]) -> None:
        """Let the running pass stop at its next safe point and record itself."""
        if self.indexer is not None:
            self.indexer.cancel.set()
        self._work.set()
        try:
            await asyncio.wait_for(asyncio.shield(passes), self.config.shutdown_timeout_s)
        except TimeoutError:
            self._give_up()

    def _open(self) -> None:
        from novad.chunker import WordPieceCounter
        from novad.embedder import SentenceTransformerEmbedder
        from novad.store import Store

        cfg = self.config
        self.manifest = Manifest(cfg.manifest_path)
        self.metrics = Metrics(cfg.metrics_path)
        interrupted = self.metrics.mark_interrupted()
        if interrupted:
            log.warning(
                "%d pass(es) were interrupted by the last stop (killed or crashed); "
                "this start repairs what they left",
                interrupted,
            )
        # The probe's child process runs while the model loads, and ends before the store opens.
        probing = self.readers.submit(self._probe_store)
        self.embedder = SentenceTransformerEmbedder(
            cfg.model, threads=cfg.embed_threads, batch_size=cfg.embed_batch_size
        )
        damage = probing.result()
        if damage:
            self._set_store_aside(damage)
        self.store = Store(cfg.chroma_dir)
        counter = WordPieceCounter(self.embedder.tokenizer_json, self.embedder.max_tokens)
        self.indexer = Indexer(cfg, self.manifest, self.store, self.embedder, counter)
        self.indexer.after_flush = self._refresh_counts
        self.indexer.on_switch = self._switch_to
        self.gen = self.indexer.reconcile()
        mismatch = self.indexer.model_mismatch(self.gen)
        if mismatch:
            log.warning("%s; building a new generation", mismatch)
            self._full_wanted = (self._next_seq(), "model-change")
        self._refresh_counts()
        self.state = "scanning"

    def _probe_store(self) -> str | None:
        """Why the serving collection cannot be read, or None (see ``novad.probe``)."""
        assert self.manifest is not None
        active = self.manifest.active()
        if active is None or not (self.config.chroma_dir / "chroma.sqlite3").exists():
            return None
        return probe(self.config.chroma_dir, active.collection, active.dimension, _PROBE_S)

    def _set_store_aside(self, damage: str) -> None:
        """Move a damaged store out of the way and forget its generations (TRAPS C07).

        The index is derived from the notes, so the start-up pass rebuilds it into a fresh
        store. Only the latest damaged copy is kept, for a post-mortem.
        """
        assert self.manifest is not None
        chroma = self.config.chroma_dir
        for older in chroma.parent.glob(f"{chroma.name}.damaged-*"):
            shutil.rmtree(older, ignore_errors=True)
        aside = chroma.with_name(f"{chroma.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        chroma.rename(aside)
        for gen in self.manifest.generations():
            self.manifest.forget_generation(gen.gen)
        self.store_repair = (
            f"{damage}; the damaged store was moved to {aside} and the index is being "
            "rebuilt from the notes"
        )
        log.error("the vector store is damaged: %s", self.store_repair)

    async def _shut_down(self, server: Server) -> None:
        self.state = "stopping"
        await server.close()
        loop = asyncio.get_running_loop()
        # The pass and every reader (a search, a plan) must end within the one deadline: a
        # thread stuck in a read must not keep the process alive.
        readers = functools.partial(self.readers.shutdown, wait=True, cancel_futures=True)
        drained = asyncio.gather(
            loop.run_in_executor(None, self._pass_thread.shutdown, True),
            loop.run_in_executor(None, readers),
        )
        try:
            await asyncio.wait_for(drained, self.config.shutdown_timeout_s)
        except TimeoutError:
            self._give_up()
        for ticket in self._tickets:
            ticket.future.cancel()
        for db in (self.manifest, self.metrics):
            if db is not None:
                db.close()
        self._release()
        log.info("stopped")

    def _give_up(self) -> None:
        log.error(
            "start-up, the running pass or a request did not stop within "
            "shutdown_timeout_s=%.0f s; "
            "exiting anyway (the next start repairs the index)",
            self.config.shutdown_timeout_s,
        )
        self._release()
        os._exit(EXIT_FAILED)

    def _on_hangup(self) -> None:
        log.warning(
            "SIGHUP received: settings are read only at start; restart novad to apply "
            "changes (it keeps running)"
        )

    def _release(self) -> None:
        lifecycle.remove_socket(self.config.socket_path)
        for lock in reversed(self._locks):
            lock.release()

    # Requests for work

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _on_changes(self, paths: set[Path]) -> None:
        if self.job is not None and self.indexer is not None and len(paths) <= _URGENT_MAX_PATHS:
            self.indexer.urgent.put(paths)
            return
        self._pending.update(paths)
        self._work.set()

    def _on_root_back(self) -> None:
        self.request_rescan("root-back")

    def _on_lost(self, why: str) -> None:
        """Events may have been lost (``why``): rescan the whole tree, backing off.

        The first rescan is asked for at once; while losses keep coming, each waits twice
        as long after the one before (up to ``_LOST_BACKOFF_MAX_S``); a calm minute resets.
        """
        if self._lost_timer is not None:
            return
        now = time.monotonic()
        if now - self._lost_at > max(_LOST_CALM_S, 4 * self._lost_delay_s):
            self._lost_delay_s = 0.0
        delay = max(0.0, self._lost_at + self._lost_delay_s - now)
        self._lost_delay_s = min(max(1.0, 2 * self._lost_delay_s), _LOST_BACKOFF_MAX_S)
        if delay:
            log.info("events were lost again (%s); rescanning in %.0f s", why, delay)
        loop = asyncio.get_running_loop()
        self._lost_timer = loop.call_later(delay, self._rescan_after_loss, why)

    def _rescan_after_loss(self, why: str) -> None:
        self._lost_timer = None
        self._lost_at = time.monotonic()
        self.rescans[why] += 1
        self.request_rescan(why)

    async def _periodic_rescans(self) -> None:
        """A whole-tree pass every ``rescan_interval_s``: a stat per note, catching anything
        an event stream missed (a network share, a clock jump, a change while stopped)."""
        interval = self.config.rescan_interval_s
        while interval and not self._stop.is_set():
            await asyncio.sleep(interval)
            self.rescans["periodic"] += 1
            self.request_rescan("periodic")

    def watch_figures(self) -> dict[str, Any]:
        """The watch for ``status``: the watcher's figures and the rescans they caused."""
        calm = time.monotonic() - self._lost_at > max(_LOST_CALM_S, 4 * self._lost_delay_s)
        return {
            **self.watcher.figures(),
            "rescans": dict(self.rescans),
            "rescan_backoff_s": 0.0 if calm else self._lost_delay_s,
            "rescan_interval_s": self.config.rescan_interval_s,
        }

    def request_rescan(self, trigger: str) -> int:
        """Ask for a whole-tree incremental pass; return its ticket number."""
        seq = self._next_seq()
        if self._rescan_wanted is None or trigger == "startup":
            self._rescan_wanted = (seq, trigger)
        self._work.set()
        return seq

    def ticket(self, *, full: bool, trigger: str) -> Ticket:
        """Register a request that a whole-tree pass (a full one if ``full``) must answer."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        job = self.job
        if full and job is not None and job.kind == "full":
            ago = time.monotonic() - job.progress.started
            reason = f"joined the full rebuild already running (started {ago:.0f} s ago)"
            return self._add_ticket(Ticket(job.start_seq, True, future, "joined", reason))
        if full:
            seq = self._next_seq()
            if self._full_wanted is None:
                self._full_wanted = (seq, trigger)
            self._work.set()
        else:
            seq = self.request_rescan(trigger)
        ticket = Ticket(seq, full, future)
        if job is not None:
            ticket.admission = "queued"
            ticket.reason = (
                f"queued behind the running {job.kind} pass ({job.trigger}); "
                "it starts when that one ends"
            )
        return self._add_ticket(ticket)

    def _add_ticket(self, ticket: Ticket) -> Ticket:
        self._tickets.append(ticket)
        return ticket

    def current_state(self) -> str:
        """``starting``, ``scanning`` (checking notes), ``rebuilding`` (writing), ``idle``."""
        job = self.job
        if job is None:
            return self.state
        writing = job.kind == "full" or job.record.files_changed or job.progress.chunks_embedded
        return "rebuilding" if writing else "scanning"

    @property
    def pending(self) -> int:
        """Changed paths (held in the debounce or queued) and whole-tree requests not yet
        taken up by a pass."""
        wanted = (self._rescan_wanted is not None) + (self._full_wanted is not None)
        urgent = len(self.indexer.urgent) if self.indexer is not None else 0
        return self.watcher.held + len(self._pending) + urgent + wanted

    # The pass loop

    async def _pass_loop(self) -> None:
        while not self._stop.is_set():
            await self._work.wait()
            self._work.clear()
            if self._stop.is_set():
                return
            try:
                await self._run_next()
            except Exception:
                # A bug in bookkeeping must not stop indexing for good: log, retry later.
                log.exception("the pass scheduler hit an error; retrying in 5 s")
                asyncio.get_running_loop().call_later(5.0, self._work.set)

    async def _run_next(self) -> None:
        job = self._next_job()
        if job is not None:
            await self._run(job)
        queued = self._pending or self._rescan_wanted or self._full_wanted
        if queued:
            self._work.set()
        elif self.job is None:
            self.state = "idle"

    def _next_job(self) -> Job | None:
        if self._full_wanted is not None:
            _, trigger = self._full_wanted
            self._full_wanted = None
            return Job("full", trigger, self._seq)
        if self._rescan_wanted is not None:
            _, trigger = self._rescan_wanted
            self._rescan_wanted = None
            # Paths the watcher named are hashed even if their size and mtime look unchanged.
            recheck, self._pending = self._pending, set()
            return Job("incremental", trigger, self._seq, recheck=recheck)
        if self._pending:
            paths, self._pending = self._pending, set()
            if self._rescan_owed:
                return Job("incremental", "watch", self._seq, recheck=paths)
            return Job("incremental", "watch", self._seq, paths)
        return None

    async def _run(self, job: Job) -> None:
        self.job = job
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        rec = job.record
        try:
            retry = await loop.run_in_executor(self._pass_thread, self._execute, job)
            self._schedule_retry(retry)
        except Cancelled:
            rec.outcome = "cancelled"
            rec.error = "the daemon is stopping; the pass ended at a safe point"
        except SourceMissing as exc:
            log.warning("%s", exc)
            rec.outcome, rec.error = "skipped", str(exc)
            # What this pass left alone is owed: the next change makes a whole-tree pass,
            # so notes that really went while the folder looked unmounted go too.
            self._rescan_owed = True
        except Exception as exc:
            log.exception("%s pass failed", job.kind)
            rec.outcome, rec.error = "failed", str(exc)
        finally:
            self.job = None
            if rec.outcome == "ok" and job.whole_tree:
                self._rescan_owed = False
            if self.indexer is not None and self.indexer.urgent:
                # Saved too late for the pass to take up: the next pass does.
                self._pending |= self.indexer.urgent.take()
        rec.duration_s = round(time.monotonic() - started, 3)
        rec.chunks_per_s = round(rec.chunks_embedded / rec.duration_s, 2) if rec.duration_s else 0.0
        await loop.run_in_executor(self.readers, self._finish, rec)
        self._answer_tickets(job, rec.as_dict())

    def _execute(self, job: Job) -> set[str]:
        assert self.indexer is not None and self.gen is not None and self.metrics is not None
        self.metrics.begin(job.record)
        if job.kind == "full":
            self.gen, retry = self.indexer.full(job.record, job.progress)
            return retry
        return self.indexer.incremental(
            self.gen,
            job.paths,
            job.record,
            job.progress,
            recheck=job.recheck,
            verify=job.trigger == "request",
        )

    def _finish(self, rec: PassRecord) -> None:
        assert self.metrics is not None and self.manifest is not None
        self.metrics.record(rec)
        if rec.kind == "full" or rec.files_changed or rec.files_deleted:
            # A log that is never folded back keeps every page a pass wrote (TRAPS C08).
            self.manifest.checkpoint()
            self.metrics.checkpoint()
        self._refresh_counts()
        self.last_pass = rec.as_dict()
        level = logging.INFO if rec.outcome == "ok" else logging.WARNING
        log.log(
            level,
            "%s pass (%s) %s: %d files changed, %d deleted, %d failed; %d chunks embedded, "
            "%d reused, %d deleted in %.2f s (%.1f chunks/s)",
            rec.kind,
            rec.trigger,
            rec.outcome,
            rec.files_changed,
            rec.files_deleted,
            rec.files_failed,
            rec.chunks_embedded,
            rec.chunks_reused,
            rec.chunks_deleted,
            rec.duration_s,
            rec.chunks_per_s,
        )

    def _switch_to(self, gen: Generation) -> None:
        """Serve searches from ``gen`` from now on (called before the old one is dropped)."""
        self.gen = gen
        self._refresh_counts()

    def _refresh_counts(self, gen: Generation | None = None) -> None:
        """Re-read the serving generation's counts (called after every write batch)."""
        serving = self.gen
        if self.manifest is None or serving is None or (gen and gen.gen != serving.gen):
            return
        self.counts = self.manifest.counts(serving.gen)

    def _schedule_retry(self, retry: set[str]) -> None:
        if retry:
            paths = {self.config.source / rel for rel in retry}
            asyncio.get_running_loop().call_later(1.0, self._on_changes, paths)

    def _answer_tickets(self, job: Job, summary: dict[str, Any]) -> None:
        if not job.whole_tree:
            return
        waiting = []
        for ticket in self._tickets:
            covered = ticket.seq <= job.start_seq and (job.kind == "full" or not ticket.full)
            if covered and not ticket.future.done():
                ticket.future.set_result({**summary, "admission": ticket.admission})
            elif not ticket.future.done():
                waiting.append(ticket)
        self._tickets = waiting
