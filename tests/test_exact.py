"""Exact search: the in-memory index against a brute-force ranking, and kept in step."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from novad.exact import ExactIndex


def brute_force(vectors: dict[str, np.ndarray], query: np.ndarray, k: int) -> list[str]:
    unit = {i: v / np.linalg.norm(v) for i, v in vectors.items()}
    q = query / np.linalg.norm(query)
    return sorted(unit, key=lambda i: -float(unit[i] @ q))[:k]


@pytest.mark.parametrize("k", [1, 5, 50, 5000])
def test_nearest_equals_a_brute_force_ranking_after_puts_and_removes(k: int) -> None:
    rng = np.random.default_rng(3)
    vectors = {f"id-{i}": rng.normal(size=16).astype(np.float32) for i in range(3000)}
    index = ExactIndex()
    index.put(list(vectors), np.stack(list(vectors.values())))
    gone = [f"id-{i}" for i in range(0, 3000, 3)]
    index.remove(gone)
    for chunk_id in gone:
        del vectors[chunk_id]
    query = rng.normal(size=16).astype(np.float32)

    got = index.nearest(query, k)

    assert [i for i, _ in got] == brute_force(vectors, query, k)
    assert len(index) == len(vectors) == 2000
    assert all(a <= b for (_, a), (_, b) in itertools.pairwise(got))


def test_distance_is_one_minus_cosine_and_a_put_replaces() -> None:
    index = ExactIndex()
    index.put(["a", "b"], np.array([[1.0, 0.0], [0.0, 3.0]]))
    index.put(["a"], np.array([[-2.0, 0.0]]))

    got = dict(index.nearest(np.array([1.0, 0.0]), 2))

    assert got == pytest.approx({"a": 2.0, "b": 1.0})
    assert len(index) == 2


def test_removing_unknown_ids_and_searching_an_empty_index_are_harmless() -> None:
    index = ExactIndex()
    assert index.nearest(np.ones(4), 3) == []
    index.put(["x"], np.ones((1, 4)))
    index.remove(["nope", "x", "x"])
    assert index.nearest(np.ones(4), 3) == []
