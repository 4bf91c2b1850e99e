"""Run a Watcher where inotify is short; print what it did as one JSON line.

Started by ``test_watcher.py``. By default it uses up every inotify instance first, run
as a spare uid (instances are counted per user, so no other process is touched). With
``--folders N`` it watches a tree of N folders and is run in a user namespace whose watch
limit was lowered below N.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import sys
import tempfile
from pathlib import Path

from novad.scanner import NoteFilter
from novad.watcher import Watcher


def main() -> None:
    folders = int(sys.argv[2]) if sys.argv[1:2] == ["--folders"] else 0
    libc = ctypes.CDLL(None, use_errno=True)
    held = []
    while not folders and (fd := libc.inotify_init1(0)) >= 0:
        held.append(fd)
    root = Path(tempfile.mkdtemp(prefix="nova-starved-"))
    for i in range(folders):
        (root / f"sub{i}").mkdir()
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
        await asyncio.sleep(3.0 if folders else 1.0)  # the watch count is checked at 2 s
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
