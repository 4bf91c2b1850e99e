"""The watcher on its own, with real watchfiles on a temp folder: losses, fallback, backoff."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from novad.config import load_config
from novad.daemon import Daemon
from novad.scanner import NoteFilter
from novad.watcher import Watcher

SPARE_UID = 4242


async def _watch_while(watcher: Watcher, act: object, settle_s: float = 1.5) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    await asyncio.sleep(0.5)
    assert callable(act)
    act()
    await asyncio.sleep(settle_s)
    stop.set()
    await task


def recording_watcher(root: Path) -> tuple[Watcher, set[Path], list[str]]:
    """A watcher on ``root`` that records the paths it hands on and the losses it reports."""
    seen: set[Path] = set()
    lost: list[str] = []
    watcher = Watcher(
        root,
        debounce_ms=50,
        max_wait_ms=1000,
        notes=NoteFilter((".md",)),
        on_changes=seen.update,
        on_root_back=lambda: None,
        on_lost=lost.append,
    )
    return watcher, seen, lost


def test_a_batch_of_half_the_kernel_queue_counts_as_an_overflow(tmp_path: Path) -> None:
    watcher, seen, lost = recording_watcher(tmp_path)
    watcher.overflow_batch = 20  # as if fs.inotify.max_queued_events were 40

    def burst() -> None:
        for i in range(50):
            (tmp_path / f"n{i}.md").write_text("x")

    asyncio.run(_watch_while(watcher, burst))
    assert lost == ["overflow"]
    assert watcher.overflows == 1
    assert len(seen) == 50, "the paths named are still handed on"


def test_small_batches_are_not_overflows_and_hidden_folders_stay_quiet(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    watcher, seen, lost = recording_watcher(tmp_path)

    def edits() -> None:
        (tmp_path / "a.md").write_text("x")
        (tmp_path / ".git" / "index.md").write_text("x")

    asyncio.run(_watch_while(watcher, edits))
    assert (lost, watcher.overflows, watcher.mode) == ([], 0, "native")
    assert seen == {tmp_path / "a.md"}


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run a watcher as a spare uid with its inotify used up",
)
def test_when_no_inotify_instance_can_be_had_the_watcher_polls_and_says_why() -> None:
    script = Path(__file__).with_name("inotify_starved.py")
    as_spare = ["setpriv", f"--reuid={SPARE_UID}", f"--regid={SPARE_UID}", "--clear-groups"]
    run = subprocess.run(
        [*as_spare, sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/tmp",
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["instances_held"] > 0
    assert result["mode"] == "polling"
    assert "native watching failed" in result["reason"]
    assert result["lost"] == ["fallback"], "what changed before polling began is rescanned"
    assert result["seen"] == ["a.md"]
    assert "falling back to polling" in run.stderr


def test_rescans_after_lost_events_back_off_and_reset_after_a_calm_spell(tmp_path: Path) -> None:
    config = load_config(
        {"source": tmp_path, "state_dir": tmp_path / "s", "socket_path": tmp_path / "s.sock"},
        env={},
    )

    async def scenario() -> list[float]:
        daemon = Daemon(config)
        asked: list[str] = []
        daemon.request_rescan = lambda trigger: asked.append(trigger) or 0  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        delays = []
        for _ in range(6):
            daemon._on_lost("overflow")
            daemon._on_lost("overflow")  # a second loss while one is due adds nothing
            timer = daemon._lost_timer
            assert timer is not None
            delays.append(round(timer.when() - loop.time()))
            timer.cancel()
            daemon._rescan_after_loss("overflow")
        assert asked == ["overflow"] * 6
        daemon._lost_at -= 3600  # an hour without losses
        daemon._on_lost("restart")
        assert daemon._lost_timer is not None
        delays.append(round(daemon._lost_timer.when() - loop.time()))
        daemon._lost_timer.cancel()
        return delays

    assert asyncio.run(scenario()) == [0, 1, 2, 4, 8, 16, 0]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_a_watch_limit_reached_part_way_falls_back_to_polling() -> None:
    """notify skips the folders it cannot watch without a word; the watcher counts them."""
    script = Path(__file__).with_name("inotify_starved.py")
    limited = f"echo 3 > /proc/sys/user/max_inotify_watches && exec {sys.executable} {script}"
    run = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--fork", "sh", "-c", limited + " --folders 5"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/tmp",
        check=False,
    )
    if run.returncode != 0 and "max_inotify_watches" in run.stderr:
        pytest.skip(f"cannot lower the watch limit in a user namespace here: {run.stderr}")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["mode"] == "polling"
    assert "watch limit was reached: 3 of 6 folders watched" in result["reason"]
    assert result["seen"] == ["a.md"]
