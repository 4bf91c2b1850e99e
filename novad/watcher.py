"""Watching the source folder with watchfiles, and noticing when the folder itself goes.

watchfiles is asked for short batches (a few tens of milliseconds of quiet) and wakes at
least every fraction of a second; the debounce is Nova's own: changed paths are held until
no event arrived for ``debounce_ms``, or for ``max_wait_ms`` at the latest, then handed on
in one set. (watchfiles sleeps a whole ``step`` before it looks at its stop event again, so
a long debounce left to it would also hold up shutdown by as long.) Nova trusts a batch
only for *which paths* changed, never for what happened to them: the indexer looks at each
path again (exists or not, content hash), so atomic saves that arrive as delete + create,
or events out of order, end in the right state (TRAPS C10).

Every couple of seconds the watch also checks that the root is still the same directory.
If it vanished or was replaced (``rm -rf`` and ``mkdir``, a rename, an unmount), the
watch is dropped, the folder is reported missing, and the index is left as it is: an
unmounted share is not the user deleting every note. When the folder is back, the watch
is set up again and a full rescan is requested.

When the event stream cannot be trusted, the watcher asks for a whole-tree rescan
(``on_lost``) and counts why. watchfiles drops the kernel's own overflow notice (an event
with no path), so Nova counts as an *overflow* a batch as large as the kernel's event queue
(``fs.inotify.max_queued_events``), after which events may have been lost; and as a
*restart* any failure of the watch itself. If native watching cannot start (the inotify
watch or instance limit, a filesystem without events), the watcher falls back to polling
and says so; ``watch_mode = "polling"`` asks for polling from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchfiles import Change, awatch

from novad.scanner import NoteFilter

log = logging.getLogger(__name__)

_ROOT_CHECK_S = 2.0
# watchfiles' own batching: quiet time before it yields, longest batch, and idle wake-up.
_STEP_MS = 50
_BATCH_MS = 250
_TICK_MS = 200
_ABSENT_POLL_S = 2.0
_RETRY_S = 5.0
# How long the inotify figures in ``status`` are reused before /proc is read again.
_FIGURES_S = 2.0
# How long a change takes to come out of watchfiles (its quiet step plus longest batch).
SETTLE_S = (_STEP_MS + _BATCH_MS) / 1000 + 0.1
_INOTIFY = "/proc/sys/fs/inotify"


class Watcher:
    """Feeds changed paths to the daemon; knows the watch mode and whether the root exists."""

    def __init__(
        self,
        source: Path,
        *,
        debounce_ms: int,
        max_wait_ms: int,
        notes: NoteFilter,
        on_changes: Callable[[set[Path]], None],
        on_root_back: Callable[[], None],
        on_lost: Callable[[str], None],
        force_polling: bool = False,
        poll_interval_ms: int = 1000,
        ignored: tuple[Path, ...] = (),
    ) -> None:
        """Keep the callbacks; ``run`` does the watching.

        Paths in or under ``ignored`` (Nova's own state dir and socket, should they sit inside
        the source folder) never wake a pass: its own writes would otherwise trigger passes
        that write again. Only entries strictly inside the source folder are considered.
        """
        self._source = source
        inside = [p.absolute() for p in ignored if source in p.absolute().parents]
        self._ignored = tuple(str(p) for p in inside)
        self._debounce_ms = debounce_ms
        self._max_wait_ms = max_wait_ms
        self._notes = notes
        self._on_changes = on_changes
        self._on_root_back = on_root_back
        self._on_lost = on_lost
        self._polling = force_polling
        self._poll_interval_ms = poll_interval_ms
        self.mode = "starting"
        self.source_present = source.is_dir()
        self._had_watches = False
        self.overflows = 0
        self.restarts = 0
        self.fallback_reason: str | None = None
        # The kernel's queue holds max_queued_events; when it overflows, watchfiles hands
        # over what was queued (repeats merged) and drops the overflow notice. Half the
        # queue in one batch is taken as a loss: if wrong, it costs one stat-only rescan.
        self.overflow_batch = (_read_int(f"{_INOTIFY}/max_queued_events") or 16384) // 2
        self._held: set[Path] = set()
        self._first_s = 0.0
        self._last_s = 0.0
        self._figures: tuple[float, dict[str, Any]] = (0.0, {})

    @property
    def held(self) -> int:
        """Changed paths waiting out the debounce."""
        return len(self._held)

    def figures(self) -> dict[str, Any]:
        """The watch as ``status`` shows it: mode, inotify watches against the limit, losses."""
        now = time.monotonic()
        taken, inotify = self._figures
        if now - taken > _FIGURES_S:
            inotify = {
                "watches": _inotify_watches() if self.mode == "native" else 0,
                "watch_limit": _read_int(f"{_INOTIFY}/max_user_watches"),
            }
            self._figures = (now, inotify)
        return {
            "mode": self.mode,
            **inotify,
            "poll_interval_ms": self._poll_interval_ms if self.mode == "polling" else None,
            "fallback_reason": self.fallback_reason,
            "overflows": self.overflows,
            "restarts": self.restarts,
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set, re-establishing the watch whenever the root returns."""
        while not stop.is_set():
            identity = _identity(self._source)
            if identity is None:
                await self._wait_for_root(stop)
                continue
            batches = [0]
            try:
                await self._watch(identity, stop, batches)
            except Exception as exc:
                if stop.is_set() or _identity(self._source) is None:
                    continue  # stopping, or the root went while the watch was set up
                if batches[0] == 0 and not self._polling:
                    # Native watching never got going: the watch or instance limit, or a
                    # filesystem without events.
                    self._fall_back(exc)
                    continue
                self.restarts += 1
                log.exception("the watcher failed; starting it again in %.0f s", _RETRY_S)
                await _sleep(stop, _RETRY_S)
                self._on_lost("restart")

    async def _wait_for_root(self, stop: asyncio.Event) -> None:
        if self.source_present:
            log.warning(
                "source folder %s is gone; the index is kept as it is until it returns",
                self._source,
            )
        self.source_present = False
        self.mode = "off"
        await _sleep(stop, _ABSENT_POLL_S)

    async def _watch(
        self, identity: tuple[int, int], stop: asyncio.Event, batches: list[int]
    ) -> None:
        if not self.source_present:
            log.info("source folder %s is back; rescanning", self._source)
            self.source_present = True
            self._on_root_back()
        self.mode = "polling" if self._polling else "native"
        self._figures = (0.0, {})
        if self._polling:
            log.info("watching %s (polling every %d ms)", self._source, self._poll_interval_ms)
        else:
            log.info("watching %s (native events)", self._source)
        root_checked = time.monotonic()
        root = str(self._source)
        counted = False
        async for changes in awatch(
            self._source,
            watch_filter=self._wanted,
            debounce=_BATCH_MS,
            step=_STEP_MS,
            stop_event=stop,
            rust_timeout=max(_STEP_MS, min(_TICK_MS, self._debounce_ms)),
            yield_on_timeout=True,
            force_polling=self._polling,
            poll_delay_ms=self._poll_interval_ms,
            ignore_permission_denied=True,
        ):
            batches[0] += 1
            now = time.monotonic()
            if len(changes) >= self.overflow_batch:
                self.overflows += 1
                log.warning(
                    "%d changes arrived at once, as many as the kernel's event queue holds "
                    "(fs.inotify.max_queued_events=%d); events may have been lost, so the "
                    "whole folder is rescanned",
                    len(changes),
                    self.overflow_batch,
                )
                self._on_lost("overflow")
            self._hold({Path(path) for change, path in changes if _names_notes(change, path)}, now)
            # The root itself deleted or created: a folder made anew may even get the old
            # one's inode number back, so the event alone is reason to watch afresh.
            root_event = any(p == root and c != Change.modified for c, p in changes)
            if not root_event and now - root_checked < _ROOT_CHECK_S:
                continue
            root_checked = now
            if not counted and not self._polling:
                # Once the watch has settled: did the watch limit stop it part-way?
                counted = True
                short = await asyncio.to_thread(self._unwatched_folders)
                if short:
                    self._fall_back(OSError(short))
                    return
            if root_event or _identity(self._source) != identity or self._watch_died():
                log.warning("source folder %s was removed or replaced", self._source)
                self._release()
                self.source_present = _identity(self._source) is not None
                if self.source_present:
                    self._on_root_back()
                return
        self._release()

    def _unwatched_folders(self) -> str | None:
        """Why native watching misses folders (the inotify watch limit), or None.

        The watch covers every folder under the root with one inotify watch each; fewer
        watches than folders means the limit stopped it part-way, silently.
        """
        watches = _inotify_watches()
        if not watches:
            return None  # not Linux, or a watch already gone (``_watch_died``)
        folders = 1
        for top, dirnames, _ in os.walk(self._source):
            # Links are not walked into; folders this user cannot read cannot be watched.
            dirnames[:] = [
                d
                for d in dirnames
                if not os.path.islink(path := os.path.join(top, d)) and os.access(path, os.R_OK)
            ]
            folders += len(dirnames)
        if watches >= folders:
            return None
        limit = _read_int(f"{_INOTIFY}/max_user_watches")
        return (
            f"the inotify watch limit was reached: {watches} of {folders} folders watched "
            f"(fs.inotify.max_user_watches={limit})"
        )

    def _watch_died(self) -> bool:
        """Whether native watching lost every inotify watch it had (its root was removed)."""
        if self.mode != "native":
            return False
        watches = _inotify_watches()
        if watches:
            self._had_watches = True
        return self._had_watches and watches == 0

    def _hold(self, paths: set[Path], now: float) -> None:
        """Add ``paths`` to the held set; hand it on once the debounce or max wait is over."""
        if paths:
            if not self._held:
                self._first_s = now
            self._held |= paths
            self._last_s = now
        if not self._held:
            return
        quiet = (now - self._last_s) * 1000 >= self._debounce_ms
        overdue = (now - self._first_s) * 1000 >= self._max_wait_ms
        if quiet or overdue:
            self._release()

    def release(self) -> None:
        """Hand on the held changes now, without waiting out the debounce (``wait``)."""
        self._release()

    def _release(self) -> None:
        if self._held:
            paths, self._held = self._held, set()
            self._on_changes(paths)

    def _wanted(self, change: Change, path: str) -> bool:
        """Whether a changed path can matter: outside Nova's own files, in an entered folder.

        Whether it is a note is decided later (``expand_changes``): a folder's name may be
        all an event gives of a moved tree.
        """
        if any(path == p or path.startswith(p + os.sep) for p in self._ignored):
            return False
        rel = os.path.relpath(path, self._source)
        if rel.startswith(".." + os.sep) or rel == "..":
            return False
        return self._notes.within(Path(rel).as_posix())

    def _fall_back(self, exc: Exception) -> None:
        self.fallback_reason = f"native watching failed: {exc}"
        log.warning(
            "native file watching of %s failed (%s); falling back to polling every %d ms. "
            "If the inotify limits were reached, raise them, for example: sysctl "
            "fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=1024",
            self._source,
            exc,
            self._poll_interval_ms,
        )
        self._polling = True
        # Whatever changed before polling took its first look is found by a rescan.
        self._on_lost("fallback")


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _names_notes(change: Change, path: str) -> bool:
    """Whether a change can name notes to look at: not a folder merely modified.

    Polling reports a folder as modified whenever an entry in it comes or goes; the entry
    itself is reported too. Taking the folder would re-hash every note under it.
    """
    return change != Change.modified or not os.path.isdir(path)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _inotify_watches() -> int | None:
    """Inotify watches held by this process (every instance), from /proc; None off Linux."""
    total = 0
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as fh:
                total += sum(line.startswith("inotify wd:") for line in fh)
        except OSError:
            continue
    return total


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None
