"""End to end: a real novad subprocess, its real socket, real files, a real ChromaDB store."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from novactl.client import DaemonError
from tests.harness import NovaProcess, expected_chunks, read_store

Nova = Callable[..., NovaProcess]


def poll_search(
    daemon: NovaProcess, query: str, path: str, needle: str = "", timeout_s: float = 30.0
) -> float:
    """Seconds until ``path`` is the top hit for ``query`` (its text holding ``needle``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        hits = daemon.search(query, k=3)
        if hits and hits[0]["path"] == path and needle in hits[0]["text"]:
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{path} not the top hit for {query!r} after {timeout_s} s: {hits}")


def poll_files(daemon: NovaProcess, files: int, timeout_s: float = 30.0) -> None:
    """Wait until ``status`` counts ``files`` notes, looking only (no wait, no rebuild)."""
    deadline = time.monotonic() + timeout_s
    while (status := daemon.call("status"))["files"] != files:
        assert time.monotonic() < deadline, f"status never counted {files} notes: {status}"
        time.sleep(0.2)


def test_first_start_indexes_every_eligible_note_and_records_the_skipped_one(
    nova: Nova, notes_dir: Path
) -> None:
    daemon = nova(notes_dir)
    status = daemon.wait_idle()
    assert status["state"] == "idle"
    # six notes (one empty) are indexed; bad.md is skipped; .obsidian is hidden
    assert status["files"] == 6
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
    poll_search(daemon, "bait shop earthworms", "garden/compost.md", "Earthworms")

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
    assert status["files"] == 6
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
    assert len(read_store(daemon.state_dir)) == 5  # the empty note has no chunks


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


def test_front_matter_of_every_yaml_type_is_indexed_with_its_tags(
    shared_daemon: NovaProcess,
) -> None:
    hit = shared_daemon.search("marmalade recipe", k=1)[0]
    assert hit["path"] == "odd-front-matter.md"
    assert hit["tags"] == ["alpha", "beta"]


def test_twenty_quick_saves_leave_exactly_the_last_version(nova: Nova, notes_dir: Path) -> None:
    """TRAPS C04: re-saving a note never leaves ghost chunks or stale markers."""
    daemon = nova(notes_dir)
    daemon.wait_idle()
    note = notes_dir / "markers.md"
    for n in range(1, 21):
        note.write_text(
            "# Alpha\n\nThe alpha section never changes.\n\n"
            f"# Beta\n\nToday's checkpoint phrase is marker-{n:02d} zebra.\n\n"
            "# Gamma\n\nThe gamma section never changes either.\n"
        )
        time.sleep(0.5)
    status = daemon.wait_idle()
    hits = daemon.search("checkpoint phrase marker-20 zebra", k=10)
    beta = [h for h in hits if h["path"] == "markers.md" and "checkpoint" in h["text"]]
    assert [h["text"] for h in beta] == ["Today's checkpoint phrase is marker-20 zebra."]
    daemon.stop()
    store = read_store(daemon.state_dir)
    assert len(store["markers.md"]) == 3
    assert sum(len(texts) for texts in store.values()) == status["chunks"]
    assert "Add of existing embedding ID" not in daemon.log()


def test_a_vanished_source_folder_keeps_the_index_until_it_returns(
    nova: Nova, notes_dir: Path
) -> None:
    """TRAPS C14: an unmounted or replaced folder is not the user deleting every note."""
    import shutil

    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    moved = notes_dir.with_name("notes.old")
    notes_dir.rename(moved)
    deadline = time.monotonic() + 30
    while daemon.call("status")["source_present"]:
        assert time.monotonic() < deadline, "missing source folder not reported"
        time.sleep(0.2)
    daemon.call("rebuild")
    assert daemon.call("status")["chunks"] == before["chunks"]
    assert daemon.search("how do I undo a commit")[0]["path"] == "git/undo.md"
    with pytest.raises(DaemonError) as planned:
        daemon.call("rebuild", {"dry_run": True})
    assert planned.value.code == "source-missing" and "missing" in str(planned.value)

    shutil.rmtree(moved)
    notes_dir.mkdir()
    (notes_dir / "a.md").write_text("The back-marker note says the folder returned.\n")
    poll_search(daemon, "back-marker folder returned", "a.md")
    assert daemon.wait_idle()["files"] == 1


def test_an_edit_that_keeps_size_and_mtime_is_still_indexed(nova: Nova, notes_dir: Path) -> None:
    """Sync tools (rsync -t, cp -p) can rewrite a note and restore its size and mtime."""
    import os

    daemon = nova(notes_dir)
    daemon.wait_idle()
    note = notes_dir / "garden/compost.md"
    before = note.stat()
    text = note.read_text()
    note.write_text(text.replace("brown dry leaves", "brown oak twigs!"))
    os.utime(note, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert note.stat().st_size == before.st_size
    poll_search(daemon, "kitchen scraps with brown oak twigs", "garden/compost.md", "oak twigs")


def test_an_emptied_mount_point_keeps_the_index(nova: Nova, notes_dir: Path) -> None:
    """TRAPS C14: an unmounted share leaves an empty folder; that is not every note deleted."""
    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    embedded = daemon.call("stats")["embedder"]["texts_embedded"]
    parked = notes_dir.with_name("parked")
    notes_dir.rename(parked)
    notes_dir.mkdir()
    result = daemon.call("rebuild", read_timeout_s=120)
    assert result["outcome"] == "skipped" and "unmounted" in result["error"]
    assert daemon.call("status")["chunks"] == before["chunks"]
    assert daemon.search("how do I undo a commit")[0]["path"] == "git/undo.md"

    notes_dir.rmdir()
    parked.rename(notes_dir)
    daemon.call("rebuild", read_timeout_s=120)
    assert daemon.wait_idle()["chunks"] == before["chunks"]
    assert daemon.call("stats")["embedder"]["texts_embedded"] == embedded


def test_changes_held_in_a_long_debounce_are_pending_and_do_not_delay_a_stop(
    nova: Nova, notes_dir: Path, home: Path
) -> None:
    config = home / "slow-debounce.toml"
    config.write_text("max_wait_ms = 600000\n")
    daemon = nova(notes_dir, "--config", str(config), "--debounce-ms", "120000")
    daemon.wait_answering()
    deadline = time.monotonic() + 60
    while daemon.call("status")["state"] != "idle":
        assert time.monotonic() < deadline, "the startup pass never finished"
        time.sleep(0.1)

    (notes_dir / "held.md").write_text("# Held\n\nA note that waits out the debounce.\n")
    deadline = time.monotonic() + 10
    while daemon.call("status")["pending"] == 0:
        assert time.monotonic() < deadline, "the change never showed as pending"
        time.sleep(0.1)
    assert daemon.call("status")["files"] == 6, "the debounce holds the change back"

    began = time.monotonic()
    assert daemon.stop(timeout_s=60) == 0
    assert time.monotonic() - began < 5, "a stop waits for no debounce"
    assert not daemon.socket.exists()


def _garble_segment(chroma: Path) -> None:
    (segment,) = [p for p in chroma.iterdir() if p.is_dir()]
    (segment / "index_metadata.pickle").write_bytes(b"\x80\x04 not a pickle " * 64)


def _truncate_catalogue(chroma: Path) -> None:
    catalogue = chroma / "chroma.sqlite3"
    with catalogue.open("r+b") as handle:
        handle.truncate(catalogue.stat().st_size // 3)


@pytest.mark.parametrize("damage", [_garble_segment, _truncate_catalogue])
def test_a_damaged_store_is_set_aside_and_rebuilt_from_the_notes(
    nova: Nova, notes_dir: Path, damage: Callable[[Path], None]
) -> None:
    """TRAPS C07: the daemon comes back from a broken store instead of failing on it."""
    daemon = nova(notes_dir)
    first = daemon.wait_idle()
    daemon.stop()
    damage(daemon.state_dir / "chroma")

    daemon.start()
    status = daemon.wait_idle()

    assert status["store_repair"] and "moved to" in status["store_repair"]
    assert status["chunks"] == first["chunks"] and status["files"] == first["files"]
    assert daemon.search("how do I undo a commit")[0]["path"] == "git/undo.md"
    assert "the vector store is damaged" in daemon.log()
    assert len(list(daemon.state_dir.glob("chroma.damaged-*"))) == 1
    daemon.stop()
    assert set(read_store(daemon.state_dir)) == set(read_store_paths(notes_dir))


def read_store_paths(root: Path) -> set[str]:
    return {path for path, texts in expected_chunks(root).items() if texts}


def test_notes_moved_out_while_running_keep_the_index(nova: Nova, notes_dir: Path) -> None:
    """The watcher's view of an emptied folder gets the same care as a rescan's."""
    import shutil

    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    embedded = daemon.call("stats")["embedder"]["texts_embedded"]
    parked = notes_dir.with_name("parked")
    parked.mkdir()
    for entry in list(notes_dir.iterdir()):
        shutil.move(entry, parked / entry.name)

    with pytest.raises(DaemonError, match="treating it as an unmounted share and keeping"):
        daemon.call("wait", {"timeout_s": 30}, read_timeout_s=60)
    status = daemon.call("status")
    assert status["chunks"] == before["chunks"]
    assert status["last_pass"]["outcome"] == "skipped"

    for entry in list(parked.iterdir()):
        shutil.move(entry, notes_dir / entry.name)
    assert daemon.wait_idle()["chunks"] == before["chunks"]
    assert daemon.call("stats")["embedder"]["texts_embedded"] == embedded


def test_symlinked_folders_are_never_entered_even_when_linked_live(
    nova: Nova, notes_dir: Path, home: Path
) -> None:
    outside = home / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nThe blue-footed booby lives outside.\n")
    daemon = nova(notes_dir)
    before = daemon.wait_idle()

    (notes_dir / "ext").symlink_to(outside, target_is_directory=True)
    (notes_dir / "garden" / "loop").symlink_to(notes_dir, target_is_directory=True)
    status = daemon.wait_idle()
    assert status["files"] == before["files"] and status["chunks"] == before["chunks"]
    result = daemon.call("rebuild", read_timeout_s=120)
    assert result["files_changed"] == 0
    daemon.stop()
    paths = set(read_store(daemon.state_dir))
    assert not {p for p in paths if p.startswith(("ext/", "garden/loop/"))}


def test_a_pipe_named_like_a_note_is_never_opened(nova: Nova, notes_dir: Path) -> None:
    import os

    os.mkfifo(notes_dir / "pipe.md")
    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    for full in (False, True):
        with daemon.client(timeout_s=20) as client:
            plan = client.call("rebuild", {"full": full, "dry_run": True})
        assert "pipe.md" not in str(plan["examples"])
    result = daemon.call("rebuild", read_timeout_s=60)
    assert result["outcome"] == "ok"
    assert daemon.wait_idle()["files"] == before["files"]
    assert daemon.stop() == 0


def test_a_state_dir_inside_the_source_does_not_wake_passes(nova: Nova, notes_dir: Path) -> None:
    daemon = nova(notes_dir, start=False)
    daemon.state_dir = notes_dir / "nova-state"
    daemon.start()
    daemon.wait_idle()
    daemon.call("rebuild", read_timeout_s=60)  # a pass that writes to the state dir
    time.sleep(1.5)
    first = daemon.call("stats")["passes"]["total"]
    time.sleep(3)
    assert daemon.call("stats")["passes"]["total"] == first


def test_a_hidden_note_is_picked_up_by_the_watcher_alone(nova: Nova, notes_dir: Path) -> None:
    """Hidden notes are notes: the watcher must not leave them to the next rescan."""
    daemon = nova(notes_dir)
    files = daemon.wait_idle()["files"]
    hidden = notes_dir / ".new.md"

    hidden.write_text("# Seeds\n\nSave the marigold seeds in a paper envelope.\n")
    poll_files(daemon, files + 1)
    poll_search(daemon, "marigold seeds paper envelope", ".new.md")

    hidden.write_text("# Seeds\n\nKeep the sunflower seeds in a glass jar instead.\n")
    poll_search(daemon, "sunflower seeds glass jar", ".new.md", "glass jar")

    hidden.unlink()
    poll_files(daemon, files)
    assert all(h["path"] != ".new.md" for h in daemon.search("seeds", k=10))
    assert daemon.stop() == 0
    assert ".new.md" not in read_store(daemon.state_dir)
