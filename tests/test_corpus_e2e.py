"""A real daemon on copies of the shared corpus: the edge cases, and a whole note vault.

Skipped, saying why, when the corpus is absent (see ``tests/corpus.py``).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.corpus import require_corpus
from tests.harness import NovaProcess, eligible_notes, read_store, short_tmpdir

pytestmark = pytest.mark.corpus
# Whichever vault test runs first pays for indexing ~10,000 chunks (10 to 20 min here).
VAULT_TIMEOUT_S = 3600


def manifest_statuses(state_dir: Path) -> dict[str, tuple[str, str | None]]:
    """Note id -> (status, reason) of the active generation, read from the manifest."""
    db = sqlite3.connect(state_dir / "manifest.sqlite3")
    rows = db.execute(
        "SELECT path, status, reason FROM files JOIN generations USING (gen) "
        "WHERE generations.state = 'active'"
    ).fetchall()
    db.close()
    return {path: (status, reason) for path, status, reason in rows}


@pytest.fixture(scope="module")
def edge_run() -> Iterator[tuple[NovaProcess, dict, dict]]:
    """The edge-case corpus indexed by a real daemon, then stopped; its store and manifest."""
    corpus = require_corpus()
    home = short_tmpdir()
    source = home / "edge"
    shutil.copytree(corpus / "edge", source)
    daemon = NovaProcess(source, home).start()
    daemon.wait_idle()
    stats = daemon.call("stats")
    daemon.stop()
    yield daemon, stats, read_store(daemon.state_dir)
    shutil.rmtree(home, ignore_errors=True)


def expected_files() -> list[dict]:
    corpus = require_corpus()
    return json.loads((corpus / "edge" / "expected.json").read_text())["files"]


def test_every_edge_file_gets_its_documented_outcome(edge_run: tuple) -> None:
    daemon, _, store = edge_run
    statuses = manifest_statuses(daemon.state_dir)
    for entry in expected_files():
        path, action = entry["path"], entry["action"]
        status, reason = statuses.get(path, (None, None))
        if action == "ignore" or path.startswith(".trash/"):
            assert status is None, path
        elif path in ("empty.md", "whitespace-only.md", "front-matter-only.md"):
            assert status == "empty" and path not in store, path
        elif path == "huge-single-line-3mb.md":
            assert status == "skipped" and "max_file_bytes" in (reason or ""), path
        elif action == "skip":
            assert status == "skipped" and reason, path
        elif action == "index-after-decoding-fallback":
            assert status == "indexed" and reason and path in store, (path, status, reason)
        else:
            assert status == "indexed" and path in store, (path, status, reason)


def test_stats_explain_every_skipped_and_recovered_edge_file(edge_run: tuple) -> None:
    _, stats, _ = edge_run
    skipped = {s["path"]: s["reason"] for s in stats["skipped_files"]}
    warned = {w["path"]: w["reason"] for w in stats["warnings"]}
    assert "NUL" in skipped["utf16le-nobom.md"]
    assert "PNG" in skipped["image-saved-as-note.md"] or "NUL" in skipped["image-saved-as-note.md"]
    assert "cp1252" in warned["cp1252-note.md"]
    assert "UTF-8" in warned["invalid-utf8.md"]
    assert "never closed" in warned["broken-front-matter.md"]


def test_no_stored_edge_chunk_holds_nul_bom_cr_or_only_whitespace(edge_run: tuple) -> None:
    _, _, store = edge_run
    for path, texts in store.items():
        for text in texts:
            assert text.strip(), path
            assert not {"\x00", "\ufeff", "\r"} & set(text), path


@pytest.fixture(scope="module")
def vault() -> Iterator[NovaProcess]:
    """A temp copy of the whole note vault, indexed by one real daemon (minutes of CPU)."""
    corpus = require_corpus()
    home = short_tmpdir()
    source = home / "vault"
    shutil.copytree(corpus / "vault", source)
    daemon = NovaProcess(source, home).start()
    daemon.wait_idle(timeout_s=3600)
    yield daemon
    daemon.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(VAULT_TIMEOUT_S)
def test_vault_status_counts_every_eligible_note(vault: NovaProcess) -> None:
    status = vault.call("status")
    assert status["files"] + status["skipped"] == len(eligible_notes(vault.source))
    assert status["skipped"] == 0
    assert set(manifest_statuses(vault.state_dir)) == eligible_notes(vault.source)


@pytest.mark.slow
@pytest.mark.timeout(VAULT_TIMEOUT_S)
@pytest.mark.parametrize(
    ("query", "path"),
    [
        (
            "Tasks can have a priority. In order to specify the priority of a task, you can "
            "append one of the priority signifiers",
            "obsidian-tasks/docs/Getting Started/Priority.md",
        ),
        (
            "Put thoughts from your knowledge base as well as new ones next to each other on a "
            "spatial canvas together with shapes, drawings, website embeds and connectors",
            "logseq-docs/pages/Whiteboard.md",
        ),
    ],
)
def test_vault_search_for_a_phrase_finds_its_note_first(
    vault: NovaProcess, query: str, path: str
) -> None:
    assert vault.search(query, k=3)[0]["path"] == path


@pytest.mark.slow
@pytest.mark.timeout(VAULT_TIMEOUT_S)
def test_vault_edit_delete_and_restart(vault: NovaProcess) -> None:
    note = vault.source / "obsidian-tasks/docs/Getting Started/Priority.md"
    with note.open("a") as fh:
        fh.write("\nThe quokka mascot approves of urgent tasks on Tuesdays.\n")
    deadline = time.monotonic() + 60
    while vault.search("quokka mascot approves urgent tasks", k=1)[0]["path"] != (
        "obsidian-tasks/docs/Getting Started/Priority.md"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.3)

    gone = "logseq-docs/pages/Whiteboard.md"
    before = vault.wait_idle()
    (vault.source / gone).unlink()
    after = vault.wait_idle()
    assert after["files"] == before["files"] - 1
    assert gone not in {h["path"] for h in vault.search("whiteboard spatial canvas", k=20)}

    embedded = vault.call("stats")["embedder"]["texts_embedded"]
    assert vault.stop() == 0
    vault.start()
    restarted = vault.wait_idle()
    assert restarted["chunks"] == after["chunks"]
    assert vault.call("stats")["embedder"]["texts_embedded"] == embedded
    assert gone not in read_store_paths(vault)


def read_store_paths(daemon: NovaProcess) -> set[str]:
    daemon.stop()
    paths = set(read_store(daemon.state_dir))
    daemon.start()
    return paths
