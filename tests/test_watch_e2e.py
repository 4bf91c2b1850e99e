"""Watching end to end: the ways files really change, against a real daemon and its store.

Each test changes real files the way an editor, a sync client or git does, then reads the
answer from the daemon (search, status, stats) and, once it stopped, from its ChromaDB store.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import write_notes
from tests.harness import NovaProcess, read_store
from tests.test_daemon_e2e import poll_files, poll_search
from tests.test_engine_e2e import embedded, many_notes, prose

Nova = Callable[..., NovaProcess]


def passes_by_trigger(daemon: NovaProcess) -> dict[str, int]:
    return dict(daemon.call("stats")["passes"]["by_trigger"])


def watch(daemon: NovaProcess) -> dict[str, Any]:
    return dict(daemon.call("status")["watch"])


# Editors


def test_an_atomic_save_by_rename_is_indexed_and_its_temp_file_never_is(
    nova: Nova, notes_dir: Path
) -> None:
    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    note = notes_dir / "garden/compost.md"
    temp = notes_dir / "garden/.compost.md.tmp-4711"  # VS Code, Obsidian, atomicwrites
    temp.write_text("# Compost\n\nA layer of straw on top keeps the compost heap warm.\n")
    os.replace(temp, note)
    poll_search(daemon, "straw keeps the heap warm", "garden/compost.md", "straw")
    assert daemon.wait_idle()["files"] == before["files"]
    daemon.stop()
    store = read_store(daemon.state_dir)
    assert [p for p in store if "tmp" in p] == []
    assert store["garden/compost.md"] == ["A layer of straw on top keeps the compost heap warm."]


def test_a_vim_style_save_with_swap_and_backup_files_leaves_only_the_note(
    nova: Nova, notes_dir: Path
) -> None:
    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    garden = notes_dir / "garden"
    swap = garden / ".compost.md.swp"
    swap.write_bytes(b"b0VIM 9.0\x00\x00" + os.urandom(2000))
    probe = garden / "4913"  # vim checks it may create files in the folder
    probe.write_text("")
    probe.unlink()
    note = garden / "compost.md"
    note.rename(garden / "compost.md~")  # the backup, then the new file under the old name
    note.write_text("# Compost\n\nCoffee grounds feed the worms in the compost heap.\n")
    (garden / "compost.md~").unlink()
    poll_search(daemon, "coffee grounds for worms", "garden/compost.md", "Coffee")
    swap.unlink()
    assert daemon.wait_idle()["files"] == before["files"]
    daemon.stop()
    store = read_store(daemon.state_dir)
    assert sorted(p for p in store if p.startswith("garden/")) == [
        "garden/compost.md",
        "garden/tomatoes.md",
    ]
    assert "Coffee grounds" in store["garden/compost.md"][0]


def test_a_note_written_in_several_chunks_ends_indexed_whole(nova: Nova, notes_dir: Path) -> None:
    daemon = nova(notes_dir)
    daemon.wait_idle()
    parts = [
        "# Beekeeping\n\n",
        "Smoke calms the bees before the hive is opened. ",
        "Queen excluders keep brood out of the honey supers. ",
        "Harvest when nine tenths of the comb is capped.\n",
    ]
    with open(notes_dir / "bees.md", "w") as fh:
        for part in parts:
            fh.write(part)
            fh.flush()
            time.sleep(0.15)
    poll_search(daemon, "when to harvest capped comb", "bees.md", "nine tenths")
    daemon.stop()
    assert read_store(daemon.state_dir)["bees.md"] == ["".join(parts[1:]).strip()]


def test_a_note_deleted_then_recreated_keeps_its_new_text(nova: Nova, notes_dir: Path) -> None:
    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    note = notes_dir / "git/undo.md"
    note.unlink()
    time.sleep(0.05)
    note.write_text("# Undo a commit\n\nUse git revert to undo a pushed commit safely.\n")
    poll_search(daemon, "undo a pushed commit", "git/undo.md", "revert")
    assert daemon.wait_idle()["files"] == before["files"]


def test_wait_hands_on_a_change_held_in_a_long_debounce_instead_of_sitting_it_out(
    nova: Nova, notes_dir: Path, home: Path
) -> None:
    config = home / "slow.toml"
    config.write_text("debounce_ms = 120000\nmax_wait_ms = 600000\n")
    daemon = nova(notes_dir, "--config", str(config))
    daemon.wait_idle()
    (notes_dir / "held.md").write_text("# Held\n\nA note about the glassblower's furnace.\n")
    began = time.monotonic()
    daemon.call("wait", {"timeout_s": 20}, read_timeout_s=30)
    assert time.monotonic() - began < 15, "wait sat out the two-minute debounce"
    assert daemon.search("glassblower furnace")[0]["path"] == "held.md"


# Bursts


def test_a_two_thousand_file_burst_is_absorbed_in_a_few_passes(nova: Nova, notes_dir: Path) -> None:
    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    passes = passes_by_trigger(daemon)
    rng = random.Random(3)
    texts = [prose(rng, 30) for _ in range(20)]  # a checkout of many similar files
    began = time.monotonic()
    for i in range(2000):
        path = notes_dir / f"checkout/{i // 100:02d}/file-{i:04d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# File {i}\n\n{texts[i % 20]}\n")
    # Look only: ``wait`` would hand the debounce on itself and run a pass of its own.
    deadline = time.monotonic() + 300
    while (
        (status := daemon.call("status"))["pending"]
        or status["pass"] is not None
        or (status["files"] != before["files"] + 2000)
    ):
        assert time.monotonic() < deadline, f"the burst was never absorbed: {status}"
        time.sleep(0.05)
    absorbed = time.monotonic() - began
    after = passes_by_trigger(daemon)
    watch_passes = after.get("watch", 0) - passes.get("watch", 0)
    print(f"2,000-file burst: {watch_passes} watch passes, absorbed in {absorbed:.1f} s")
    assert 1 <= watch_passes <= 5, after
    daemon.stop()
    assert len([p for p in read_store(daemon.state_dir) if p.startswith("checkout/")]) == 2000


def test_a_note_saved_during_a_full_rebuild_is_searchable_before_the_rebuild_ends(
    nova: Nova, home: Path
) -> None:
    source = home / "notes"
    many_notes(source, 400, seed=11)
    daemon = nova(source)
    daemon.wait_idle()
    reply: dict[str, Any] = {}

    def rebuild() -> None:
        reply.update(daemon.call("rebuild", {"full": True}, read_timeout_s=600))

    rebuilding = threading.Thread(target=rebuild)
    rebuilding.start()
    deadline = time.monotonic() + 60
    while (daemon.call("status")["pass"] or {}).get("kind") != "full":
        assert time.monotonic() < deadline, "the full rebuild never started"
        time.sleep(0.05)
    time.sleep(1.0)
    (source / "urgent.md").write_text(
        "# Lighthouse\n\nThe lighthouse lens was polished with jeweller's rouge.\n"
    )
    took = poll_search(daemon, "polished lighthouse lens", "urgent.md", "rouge")
    current = daemon.call("status")["pass"]
    assert current is not None and current["kind"] == "full", (
        "the rebuild ended before the saved note was searchable: it was not taken first"
    )
    assert current["done"] < current["total"]
    print(f"saved during a full rebuild: searchable after {took:.2f} s")
    rebuilding.join(600)
    assert reply["outcome"] == "ok"
    assert daemon.search("polished lighthouse lens")[0]["path"] == "urgent.md"
    assert daemon.wait_idle()["files"] == 401


def test_a_note_saved_during_a_burst_goes_ahead_of_it(nova: Nova, home: Path) -> None:
    source = home / "notes"
    write_notes(source, {"seed.md": "# Seed\n\nA first note so the index is not empty.\n"})
    daemon = nova(source)
    daemon.wait_idle()
    many_notes(source, 400, seed=5)  # distinct texts: the pass embeds for a while
    deadline = time.monotonic() + 60
    while (daemon.call("status")["pass"] or {}).get("trigger") != "watch":
        assert time.monotonic() < deadline, "the burst's pass never started"
        time.sleep(0.05)
    time.sleep(1.0)
    (source / "urgent.md").write_text("# Ferry\n\nThe night ferry to the island leaves at ten.\n")
    took = poll_search(daemon, "night ferry island", "urgent.md")
    current = daemon.call("status")["pass"]
    assert current is not None and current["done"] < current["total"], (
        "the burst was through before the saved note was searchable"
    )
    print(f"saved during a 400-note burst: searchable after {took:.2f} s")
    assert daemon.wait_idle()["files"] == 402


def test_a_first_index_takes_the_note_changed_last_first(nova: Nova, home: Path) -> None:
    source = home / "notes"
    many_notes(source, 300, seed=13)
    for i, path in enumerate(sorted(source.rglob("*.md"))):
        os.utime(path, (1_600_000_000 + i, 1_600_000_000 + i))  # written years ago
    (source / "z-latest.md").write_text("# Latest\n\nThe otter sanctuary opens on Monday.\n")
    daemon = nova(source)
    deadline = time.monotonic() + 120
    while daemon.call("status")["pass"] is None:  # the model loads first
        assert time.monotonic() < deadline, "the start-up pass never began"
        time.sleep(0.05)
    took = poll_search(daemon, "otter sanctuary opening day", "z-latest.md", timeout_s=60)
    current = daemon.call("status")["pass"]
    assert current is not None and current["done"] < current["total"], (
        "the start-up pass was through before the newest note was searchable"
    )
    print(f"newest note searchable {took:.2f} s into a first index of 301 notes")
    assert daemon.wait_idle()["files"] == 301


# Moves and folders


def test_renaming_a_folder_moves_its_notes_and_embeds_nothing(nova: Nova, notes_dir: Path) -> None:
    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    texts = embedded(daemon)
    (notes_dir / "garden").rename(notes_dir / "yard")
    poll_search(daemon, "hornworms eating leaves", "yard/tomatoes.md")
    assert daemon.wait_idle()["files"] == before["files"]
    assert embedded(daemon) == texts
    daemon.stop()
    paths = set(read_store(daemon.state_dir))
    assert {"yard/tomatoes.md", "yard/compost.md"} <= paths
    assert not any(p.startswith("garden/") for p in paths)


def test_deleting_a_folder_removes_its_notes(nova: Nova, notes_dir: Path) -> None:
    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    shutil.rmtree(notes_dir / "garden")
    poll_files(daemon, before["files"] - 2)
    daemon.stop()
    assert not any(p.startswith("garden/") for p in read_store(daemon.state_dir))


def test_a_deleted_source_folder_is_reported_and_reindexed_when_recreated(
    nova: Nova, notes_dir: Path
) -> None:
    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    backup = notes_dir.with_name("backup")
    shutil.copytree(notes_dir, backup)
    shutil.rmtree(notes_dir)
    deadline = time.monotonic() + 30
    while (status := daemon.call("status"))["source_present"]:
        assert time.monotonic() < deadline, "the missing folder was never reported"
        time.sleep(0.2)
    assert status["watch"]["mode"] == "off"
    assert status["files"] == before["files"], "a missing folder deletes nothing"
    assert daemon.search("how do I undo a commit")[0]["path"] == "git/undo.md"

    shutil.copytree(backup, notes_dir)
    (notes_dir / "new.md").write_text("# Returned\n\nThe folder came back with a quokka note.\n")
    poll_search(daemon, "quokka note", "new.md")
    status = daemon.wait_idle()
    assert status["source_present"] and status["watch"]["mode"] == "native"
    assert status["files"] == before["files"] + 1


def test_a_source_folder_made_anew_at_once_is_watched_again(nova: Nova, notes_dir: Path) -> None:
    """``rm -rf notes; cp -a backup notes`` can give the new folder the old inode number."""
    daemon = nova(notes_dir)
    before = daemon.wait_idle()
    backup = notes_dir.with_name("backup")
    shutil.copytree(notes_dir, backup)
    inode = notes_dir.stat().st_ino
    shutil.rmtree(notes_dir)
    shutil.copytree(backup, notes_dir)
    print(f"inode reused: {notes_dir.stat().st_ino == inode}")
    time.sleep(3)  # past the watcher's periodic root check
    (notes_dir / "later.md").write_text("# Later\n\nThe wombat restores violins.\n")
    poll_search(daemon, "wombat restores violins", "later.md")
    status = daemon.wait_idle()
    assert status["files"] == before["files"] + 1
    assert status["watch"]["mode"] == "native" and status["watch"]["watches"] >= 1


def test_an_emptied_folder_that_fills_again_drops_the_notes_that_went(
    nova: Nova, notes_dir: Path
) -> None:
    daemon = nova(notes_dir)
    daemon.wait_idle()
    shutil.rmtree(notes_dir)
    notes_dir.mkdir()
    deadline = time.monotonic() + 30
    while (daemon.call("status")["last_pass"] or {}).get("outcome") != "skipped":
        assert time.monotonic() < deadline, "the emptied folder was not treated as unmounted"
        time.sleep(0.2)
    assert daemon.call("status")["files"] == 6, "an empty folder looks unmounted: index kept"
    (notes_dir / "first.md").write_text("# First\n\nThe first note in the new folder: a yak.\n")
    poll_files(daemon, 1)
    assert [h["path"] for h in daemon.search("how do I undo a commit", k=3)] == ["first.md"]


# What gets indexed


def test_include_and_exclude_patterns_choose_what_is_indexed(
    nova: Nova, notes_dir: Path, home: Path
) -> None:
    write_notes(
        notes_dir,
        {
            "drafts/idea.md": "# Idea\n\nA half-baked idea about submarine gardens.\n",
            "node_modules/pkg/README.md": "# Package\n\nA vendored readme about parsers.\n",
        },
    )
    config = home / "novad.toml"
    config.write_text('exclude = [".*/", "node_modules/", "drafts/"]\n')
    daemon = nova(notes_dir, "--config", str(config))
    before = daemon.wait_idle()
    assert before["files"] == 6
    (notes_dir / "drafts/later.md").write_text("# Later\n\nAnother excluded draft.\n")
    (notes_dir / "kept.md").write_text("# Kept\n\nA note about kept promises.\n")
    poll_files(daemon, 7)
    daemon.stop()
    paths = set(read_store(daemon.state_dir))
    assert "kept.md" in paths and not any(p.startswith(("drafts/", "node_modules/")) for p in paths)

    # Excluding more on a restart takes what is now excluded out of the index.
    config.write_text('exclude = [".*/", "node_modules/", "drafts/", "garden/"]\n')
    daemon.start()
    assert daemon.wait_idle()["files"] == 5
    daemon.stop()
    assert not any(p.startswith("garden/") for p in read_store(daemon.state_dir))

    # An include that matches nothing empties the index: the folder is not unmounted.
    config.write_text('include = ["journal/"]\n')
    daemon.start()
    status = daemon.wait_idle()
    assert (status["files"], status["last_pass"]["outcome"]) == (0, "ok")


# When native events fail


def test_forced_polling_finds_changes_and_says_so(nova: Nova, notes_dir: Path) -> None:
    daemon = nova(notes_dir, "--watch-mode", "polling", "--poll-interval-ms", "250")
    daemon.wait_idle()
    figures = watch(daemon)
    assert (figures["mode"], figures["poll_interval_ms"], figures["watches"]) == ("polling", 250, 0)
    (notes_dir / "polled.md").write_text("# Polled\n\nA note about tidal pools and limpets.\n")
    poll_search(daemon, "tidal pools limpets", "polled.md")
    (notes_dir / "garden").rename(notes_dir / "yard")
    poll_search(daemon, "hornworms eating leaves", "yard/tomatoes.md")


def test_native_watching_reports_its_watches_against_the_system_limit(
    nova: Nova, notes_dir: Path
) -> None:
    daemon = nova(notes_dir)
    daemon.wait_idle()
    figures = watch(daemon)
    folders = 1 + sum(1 for p in notes_dir.rglob("*") if p.is_dir())
    assert figures["mode"] == "native"
    assert figures["watch_limit"] == int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    assert folders - 1 <= figures["watches"] <= folders + 1
    assert (figures["overflows"], figures["restarts"]) == (0, 0)


def test_a_periodic_rescan_catches_what_the_watcher_missed(nova: Nova, notes_dir: Path) -> None:
    # Polling once an hour stands in for an event stream that missed a change.
    daemon = nova(
        notes_dir, "--watch-mode", "polling", "--poll-interval-ms", "3600000",
        "--rescan-interval-s", "1",
    )  # fmt: skip
    daemon.wait_idle()
    (notes_dir / "missed.md").write_text("# Missed\n\nA note about the barn owl's pellets.\n")
    poll_search(daemon, "barn owl pellets", "missed.md")
    figures = watch(daemon)
    assert figures["rescans"]["periodic"] >= 1
    assert passes_by_trigger(daemon).get("periodic", 0) >= 1
