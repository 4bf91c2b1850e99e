"""novactl as a user runs it: a separate process talking to a real daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.harness import NovaProcess


def novactl(socket: Path, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "novactl", "--socket", str(socket), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
    )


def test_status_json_reports_state_files_and_chunks(shared_daemon: NovaProcess) -> None:
    run = novactl(shared_daemon.socket, "status", "--json")
    assert run.returncode == 0, run.stderr
    status = json.loads(run.stdout)
    assert status["state"] == "idle"
    assert status["files"] == 6 and status["chunks"] > 0


def test_human_status_and_stats_render(shared_daemon: NovaProcess) -> None:
    status = novactl(shared_daemon.socket, "status")
    assert status.returncode == 0 and "idle" in status.stdout
    stats = novactl(shared_daemon.socket, "stats")
    assert stats.returncode == 0 and "bad.md" in stats.stdout


def test_search_json_lists_hits_best_first(shared_daemon: NovaProcess) -> None:
    run = novactl(shared_daemon.socket, "search", "how do I undo a commit", "-k", "3", "--json")
    assert run.returncode == 0, run.stderr
    hits = json.loads(run.stdout)
    assert len(hits) == 3
    assert hits[0]["path"] == "git/undo.md"
    assert {"path", "heading", "text", "score"} <= set(hits[0])
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_stats_json_lists_the_skipped_file_with_its_reason(shared_daemon: NovaProcess) -> None:
    run = novactl(shared_daemon.socket, "stats", "--json")
    stats = json.loads(run.stdout)
    assert [s["path"] for s in stats["skipped_files"]] == ["bad.md"]
    assert stats["passes"]["total"] >= 1


def test_wait_and_incremental_rebuild_succeed(shared_daemon: NovaProcess) -> None:
    assert novactl(shared_daemon.socket, "wait", "--timeout", "60").returncode == 0
    run = novactl(shared_daemon.socket, "rebuild", "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["outcome"] == "ok" and summary["chunks_embedded"] == 0


def test_full_rebuild_without_a_terminal_needs_force(shared_daemon: NovaProcess) -> None:
    run = novactl(shared_daemon.socket, "rebuild", "--full")
    assert run.returncode == 2
    assert "--force" in run.stderr


def test_no_daemon_exits_3_naming_the_socket(tmp_path: Path) -> None:
    missing = tmp_path / "nobody.sock"
    run = novactl(missing, "status")
    assert run.returncode == 3
    assert str(missing) in run.stderr.replace("\n", "")
