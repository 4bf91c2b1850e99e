"""Run a Watcher in a process whose user has no inotify instance left; print what it did.

Started by ``test_watcher.py`` as a spare uid (inotify instances are counted per user, so
using them all up there touches no other process). Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import tempfile
from pathlib import Path

from novad.scanner import NoteFilter
from novad.watcher import Watcher


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    held = []
    while (fd := libc.inotify_init1(0)) >= 0:
        held.append(fd)
    root = Path(tempfile.mkdtemp(prefix="nova-starved-"))
    seen: set[Path] = set()
    lost: list[str] = []

    async def watch() -> Watcher:
        stop = asyncio.Event()
        watcher = Watcher(
            root,
            debounce_ms=50,
            max_wait_ms=1000,
            notes=NoteFilter((".md",)),
            on_changes=seen.update,
            on_root_back=lambda: None,
            on_lost=lost.append,
            poll_interval_ms=100,
        )
        task = asyncio.create_task(watcher.run(stop))
        await asyncio.sleep(1.0)
        (root / "a.md").write_text("written once polling runs\n")
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task
        return watcher

    watcher = asyncio.run(watch())
    print(
        json.dumps(
            {
                "instances_held": len(held),
                "mode": watcher.mode,
                "reason": watcher.fallback_reason,
                "seen": sorted(p.name for p in seen),
                "lost": lost,
            }
        )
    )


if __name__ == "__main__":
    main()
