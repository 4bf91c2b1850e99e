"""The ChromaDB store wrapper on a real embedded store in a temp dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from chromadb.api.shared_system_client import SharedSystemClient

from novad.probe import probe
from novad.store import ChunkEntry, Store


def entries(count: int) -> list[ChunkEntry]:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(count, 8)).astype(np.float32)
    return [ChunkEntry(f"id-{i}", vectors[i], f"text {i}") for i in range(count)]


def test_writes_and_deletes_are_cut_to_the_batch_size_the_client_reports(tmp_path: Path) -> None:
    """TRAPS C02: no single call exceeds the store's batch limit, whatever it is."""
    store = Store(tmp_path / "chroma")
    assert store.max_batch >= 1
    store.max_batch = 7  # as if the client reported a tiny limit
    store.create("nova-g000001", "test-model", 8)
    store.upsert("nova-g000001", entries(50))
    assert store.count("nova-g000001") == 50
    assert len(store.all_ids("nova-g000001")) == 50
    store.delete("nova-g000001", [f"id-{i}" for i in range(45)])
    assert store.all_ids("nova-g000001") == {f"id-{i}" for i in range(45, 50)}


def test_query_gives_the_nearest_texts_with_their_documents(tmp_path: Path) -> None:
    store = Store(tmp_path / "chroma")
    store.create("nova-g000001", "test-model", 8)
    written = entries(3)
    store.upsert("nova-g000001", written)
    (best, *_) = store.query("nova-g000001", written[1].vector, 2)
    assert (best["id"], best["document"]) == ("id-1", "text 1")
    assert abs(best["distance"]) < 1e-5


def test_only_nova_collections_are_listed_and_dropping_is_idempotent(tmp_path: Path) -> None:
    store = Store(tmp_path / "chroma")
    store.create("nova-g000002", "test-model", 8)
    assert store.names() == ["nova-g000002"]
    store.drop("nova-g000002")
    store.drop("nova-g000002")
    assert store.names() == []


def segment_dirs(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.is_dir()}


def test_dropping_a_collection_removes_its_segment_folder(tmp_path: Path) -> None:
    """TRAPS C08: Chroma leaves a dropped collection's folder behind; Nova removes it."""
    store = Store(tmp_path / "chroma")
    store.create("nova-g000001", "test-model", 8)
    store.upsert("nova-g000001", entries(300))
    first = segment_dirs(tmp_path / "chroma")
    assert len(first) == 1, "a collection with vectors has its segment folder"
    store.create("nova-g000002", "test-model", 8)
    store.upsert("nova-g000002", entries(300))

    store.drop("nova-g000001")

    left = segment_dirs(tmp_path / "chroma")
    assert len(left) == 1 and not left & first
    assert store.count("nova-g000002") == 300


def test_opening_the_store_removes_folders_a_drop_left_behind(tmp_path: Path) -> None:
    store = Store(tmp_path / "chroma")
    store.create("nova-g000001", "test-model", 8)
    store.upsert("nova-g000001", entries(300))
    (live,) = segment_dirs(tmp_path / "chroma")
    stray = tmp_path / "chroma" / "0b4f5a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    stray.mkdir()
    (stray / "data_level0.bin").write_bytes(b"\0" * 1024)
    (tmp_path / "chroma" / "not-a-segment").mkdir()

    reopened = Store(tmp_path / "chroma")

    assert segment_dirs(tmp_path / "chroma") == {live, "not-a-segment"}
    assert reopened.count("nova-g000001") == 300


def test_the_probe_passes_a_healthy_store_and_names_a_damaged_segment(tmp_path: Path) -> None:
    """TRAPS C07: a truncated segment is found by a child process, not by the daemon."""
    chroma = tmp_path / "chroma"
    store = Store(chroma)
    store.create("nova-g000001", "test-model", 8)
    store.upsert("nova-g000001", entries(1500))  # past the size at which Chroma persists HNSW
    del store
    SharedSystemClient.clear_system_cache()  # closes the client, as a stopped daemon would
    assert probe(chroma, "nova-g000001", 8, timeout_s=60) is None

    (segment,) = segment_dirs(chroma)
    (chroma / segment / "header.bin").write_bytes(b"")
    damage = probe(chroma, "nova-g000001", 8, timeout_s=60)
    assert damage is not None and damage.startswith("collection nova-g000001 cannot be read: ")
    assert "hnsw" in damage.lower()


def test_the_probe_names_a_missing_collection(tmp_path: Path) -> None:
    Store(tmp_path / "chroma").create("nova-g000001", "test-model", 8)
    damage = probe(tmp_path / "chroma", "nova-g000007", 8, timeout_s=60)
    assert damage is not None and "nova-g000007" in damage


def test_search_is_exact_and_follows_writes_made_after_the_first_search(tmp_path: Path) -> None:
    """The in-memory copy is read once, then kept in step by upserts and deletes."""
    store = Store(tmp_path / "chroma")
    store.create("nova-g000001", "test-model", 8)
    written = entries(40)
    store.upsert("nova-g000001", written[:20])
    assert store.query("nova-g000001", written[5].vector, 1)[0]["id"] == "id-5"

    store.upsert("nova-g000001", written[20:])
    store.delete("nova-g000001", ["id-5"])

    assert store.query("nova-g000001", written[30].vector, 1)[0]["id"] == "id-30"
    assert "id-5" not in [r["id"] for r in store.query("nova-g000001", written[5].vector, 40)]
    assert len(store.query("nova-g000001", written[0].vector, 100)) == 39
