"""End to end: a real novad subprocess, its real socket, real files, a real ChromaDB store."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.harness import NovaProcess, read_store

Nova = Callable[..., NovaProcess]


def poll_search(daemon: NovaProcess, query: str, path: str, timeout_s: float = 30.0) -> float:
    """Seconds until ``path`` is the top hit for ``query``; fail after ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        hits = daemon.search(query, k=3)
        if hits and hits[0]["path"] == path:
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{path} not the top hit for {query!r} after {timeout_s} s: {hits}")


def test_first_start_indexes_every_eligible_note_and_records_the_skipped_one(
    nova: Nova, notes_dir: Path
) -> None:
    daemon = nova(notes_dir)
    status = daemon.wait_idle()
    assert status["state"] == "idle"
    # five notes (one empty) are indexed; bad.md is skipped; .obsidian is hidden
    assert status["files"] == 5
    assert status["skipped"] == 1
    stats = daemon.call("stats")
    skipped = {s["path"]: s["reason"] for s in stats["skipped_files"]}
    assert "NUL" in skipped["bad.md"]
    store = daemon.call("status")
    assert store["chunks"] == stats["store"]["chunks"] > 0


def test_search_finds_the_note_that_says_it_first(nova: Nova, notes_dir: Path) -> None:
    daemon = nova(notes_dir)
    daemon.wait_idle()
    hits = daemon.search("how do I undo a commit", k=3)
    assert hits[0]["path"] == "git/undo.md"
    assert hits[0]["heading"] == "Undo a commit"
    assert "git reset --soft" in hits[0]["text"]
    hits = daemon.search("hornworms eating leaves")
    assert (hits[0]["path"], hits[0]["heading"]) == (
        "garden/tomatoes.md",
        "Growing tomatoes > Pests",
    )
    assert set(hits[0]["tags"]) >= {"garden", "summer", "vegetables"}


def test_edits_deletes_and_new_notes_are_picked_up_by_the_watcher(
    nova: Nova, notes_dir: Path
) -> None:
    daemon = nova(notes_dir)
    daemon.wait_idle()
    with open(notes_dir / "garden/compost.md", "a") as fh:
        fh.write("\nEarthworms from the bait shop speed the compost heap up a lot.\n")
    poll_search(daemon, "bait shop earthworms", "garden/compost.md")

    (notes_dir / "travel").mkdir()
    (notes_dir / "travel/lisbon.md").write_text("# Lisbon\n\nTram 28 climbs to Alfama.\n")
    poll_search(daemon, "tram to Alfama", "travel/lisbon.md")

    (notes_dir / "git/undo.md").unlink()
    deadline = time.monotonic() + 30
    while any(h["path"] == "git/undo.md" for h in daemon.search("undo a commit", k=10)):
        assert time.monotonic() < deadline, "deleted note still searchable"
        time.sleep(0.2)
    daemon.stop()
    store = read_store(daemon.state_dir)
    assert "git/undo.md" not in store
    assert any("Earthworms" in text for text in store["garden/compost.md"])


def test_restart_reembeds_nothing_and_keeps_the_store(nova: Nova, notes_dir: Path) -> None:
    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    embedded = daemon.call("stats")["embedder"]["texts_embedded"]
    assert daemon.stop() == 0
    stored_before = read_store(daemon.state_dir)

    daemon.start()
    after = daemon.wait_idle()
    assert (after["files"], after["chunks"]) == (before["files"], before["chunks"])
    assert after["last_pass"]["chunks_embedded"] == 0
    assert daemon.call("stats")["embedder"]["texts_embedded"] == embedded
    assert daemon.stop() == 0
    assert read_store(daemon.state_dir) == stored_before


def test_a_fixed_skipped_file_is_indexed_without_a_restart(nova: Nova, notes_dir: Path) -> None:
    daemon = nova(notes_dir)
    daemon.wait_idle()
    (notes_dir / "bad.md").write_text("# Repaired\n\nThe zeppelin hangar note is readable now.\n")
    poll_search(daemon, "zeppelin hangar", "bad.md")
    assert daemon.wait_idle()["skipped"] == 0


def test_renamed_note_costs_no_embedding(nova: Nova, notes_dir: Path) -> None:
    daemon = nova(notes_dir)
    daemon.wait_idle()
    before = daemon.call("stats")["embedder"]
    (notes_dir / "garden/compost.md").rename(notes_dir / "compost-heap.md")
    status = daemon.wait_idle()
    hits = daemon.search("turn the compost heap", k=2)
    assert hits[0]["path"] == "compost-heap.md"
    assert status["files"] == 5
    after = daemon.call("stats")["embedder"]
    assert after["texts_embedded"] == before["texts_embedded"]
    assert after["chunks_reused"] == before["chunks_reused"] + 1


def test_full_rebuild_switches_to_a_new_generation(nova: Nova, notes_dir: Path) -> None:
    daemon = nova(notes_dir)
    first = daemon.wait_idle()
    events: list[dict] = []
    with daemon.client() as client:
        result = client.call("rebuild", {"full": True}, on_event=events.append)
    assert result["outcome"] == "ok" and result["kind"] == "full"
    assert result["chunks_embedded"] > 0
    status = daemon.call("status")
    assert status["generation"] == first["generation"] + 1
    assert status["chunks"] == first["chunks"]
    assert daemon.search("how do I undo a commit")[0]["path"] == "git/undo.md"
    daemon.stop()
    assert len(read_store(daemon.state_dir)) == 4  # the empty note has no chunks


def test_second_daemon_on_the_same_state_dir_exits_naming_the_first(
    nova: Nova, notes_dir: Path, home: Path
) -> None:
    first = nova(notes_dir)
    first.wait_idle()
    second = nova(notes_dir, start=False)
    second.socket = home / "other.sock"
    second.start(wait_ready=False)
    assert second.proc is not None
    assert second.proc.wait(20) == 3
    log = second.log()
    assert f"pid {first.proc.pid}" in log and str(first.state_dir) in log
    assert first.search("how do I undo a commit")[0]["path"] == "git/undo.md"


def test_socket_of_a_killed_daemon_is_replaced_but_a_regular_file_is_not(
    nova: Nova, notes_dir: Path
) -> None:
    daemon = nova(notes_dir)
    daemon.kill()
    assert daemon.socket.exists()
    daemon.start()
    assert daemon.call("ping")["pid"] == daemon.proc.pid
    daemon.stop()
    assert not daemon.socket.exists(), "a clean stop removes the socket"

    daemon.socket.write_text("not a socket")
    daemon.start(wait_ready=False)
    assert daemon.proc.wait(20) == 3
    assert daemon.socket.read_text() == "not a socket"
    assert "is not a socket" in daemon.log()
