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
is set up again and a full rescan is requested. If native watching cannot start (the
inotify watch limit), the watcher falls back to polling and says so.
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

from watchfiles import Change, awatch

from novad.scanner import is_skipped_dir

log = logging.getLogger(__name__)

_ROOT_CHECK_S = 2.0
# watchfiles' own batching: quiet time before it yields, longest batch, and idle wake-up.
_STEP_MS = 50
_BATCH_MS = 250
_TICK_MS = 200
_ABSENT_POLL_S = 2.0
_RETRY_S = 5.0


class Watcher:
    """Feeds changed paths to the daemon; knows the watch mode and whether the root exists."""

    def __init__(
        self,
        source: Path,
        *,
        debounce_ms: int,
        max_wait_ms: int,
        on_changes: Callable[[set[Path]], None],
        on_root_back: Callable[[], None],
        force_polling: bool = False,
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
        self._on_changes = on_changes
        self._on_root_back = on_root_back
        self._polling = force_polling
        self.mode = "off"
        self.source_present = source.is_dir()
        self._held: set[Path] = set()
        self._first_s = 0.0
        self._last_s = 0.0

    @property
    def held(self) -> int:
        """Changed paths waiting out the debounce."""
        return len(self._held)

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set, re-establishing the watch whenever the root returns."""
        while not stop.is_set():
            identity = _identity(self._source)
            if identity is None:
                await self._wait_for_root(stop)
                continue
            try:
                await self._watch(identity, stop)
            except OSError as exc:
                await self._fall_back(exc, stop)
            except Exception:
                log.exception("the watcher failed; starting it again in %.0f s", _RETRY_S)
                await _sleep(stop, _RETRY_S)

    async def _wait_for_root(self, stop: asyncio.Event) -> None:
        if self.source_present:
            log.warning(
                "source folder %s is gone; the index is kept as it is until it returns",
                self._source,
            )
        self.source_present = False
        self.mode = "off"
        await _sleep(stop, _ABSENT_POLL_S)

    async def _watch(self, identity: tuple[int, int], stop: asyncio.Event) -> None:
        if not self.source_present:
            log.info("source folder %s is back; rescanning", self._source)
            self.source_present = True
            self._on_root_back()
        self.mode = "polling" if self._polling else "native"
        log.info("watching %s (%s)", self._source, self.mode)
        root_checked = time.monotonic()
        async for changes in awatch(
            self._source,
            watch_filter=self._wanted,
            debounce=_BATCH_MS,
            step=_STEP_MS,
            stop_event=stop,
            rust_timeout=max(_STEP_MS, min(_TICK_MS, self._debounce_ms)),
            yield_on_timeout=True,
            force_polling=self._polling,
            ignore_permission_denied=True,
        ):
            now = time.monotonic()
            self._hold({Path(path) for _, path in changes}, now)
            if now - root_checked < _ROOT_CHECK_S:
                continue
            root_checked = now
            if _identity(self._source) != identity:
                log.warning("source folder %s was removed or replaced", self._source)
                self._release()
                self.source_present = _identity(self._source) is not None
                if self.source_present:
                    self._on_root_back()
                return
        self._release()

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

    def _release(self) -> None:
        if self._held:
            paths, self._held = self._held, set()
            self._on_changes(paths)

    def _wanted(self, change: Change, path: str) -> bool:
        if any(path == p or path.startswith(p + os.sep) for p in self._ignored):
            return False
        rel = os.path.relpath(path, self._source)
        return not any(is_skipped_dir(part) for part in Path(rel).parts[:-1]) and not (
            Path(rel).name.startswith(".") and os.path.isdir(path)
        )

    async def _fall_back(self, exc: OSError, stop: asyncio.Event) -> None:
        if self._polling:
            log.error(
                "polling %s failed too (%s); trying again in %.0f s", self._source, exc, _RETRY_S
            )
            self.mode = "off"
            await _sleep(stop, _RETRY_S)
            return
        log.warning(
            "native file watching failed (%s); falling back to polling. If the inotify watch "
            "limit was reached, raise it with: sysctl fs.inotify.max_user_watches=524288",
            exc,
        )
        self._polling = True


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None
