"""Exact nearest-neighbour search over one collection's vectors, held in memory.

ChromaDB answers queries from an HNSW graph, which is approximate, and on notes it misses in
a way no setting fixes: a note written after a few hundred chunks made from one template
(daily notes with the same sections) gets no links *into* it, because each template chunk
keeps its nearest neighbours, the other template chunks. Such a note is then never
returned, at any ``k``, until the graph is rebuilt in another order; a larger ``search_ef``
or ``M`` does not help (both measured). A notes folder holds thousands to a few hundred
thousand distinct texts, and comparing a query with every one of them costs milliseconds,
so Nova ranks them all: 1.5 KiB of memory per text (384 float32 dimensions), 15 MiB per
10,000 texts.

The rows are unit vectors, so the dot product with a unit query is the cosine similarity,
and ``1 - similarity`` is ChromaDB's cosine distance.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

_INITIAL_ROWS = 1024


class ExactIndex:
    """Every vector of one collection, by id; thread-safe."""

    def __init__(self) -> None:
        """Start empty; the first vector fixes the dimension."""
        self._lock = threading.Lock()
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._ids)

    def put(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors, or replace those of ids already held."""
        unit = _normalised(np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1))
        with self._lock:
            for chunk_id, row in zip(ids, unit, strict=True):
                index = self._rows.get(chunk_id)
                if index is None:
                    index = self._append(chunk_id, row.shape[0])
                self._matrix[index] = row

    def _append(self, chunk_id: str, dimension: int) -> int:
        index = len(self._ids)
        if index == self._matrix.shape[0]:
            grown = np.zeros((max(_INITIAL_ROWS, 2 * index), dimension), dtype=np.float32)
            if index:
                grown[:index] = self._matrix[:index]
            self._matrix = grown
        self._ids.append(chunk_id)
        self._rows[chunk_id] = index
        return index

    def remove(self, ids: Sequence[str]) -> None:
        """Forget vectors by id; ids not held are ignored."""
        with self._lock:
            for chunk_id in ids:
                index = self._rows.pop(chunk_id, None)
                if index is None:
                    continue
                last = len(self._ids) - 1
                if index != last:  # move the last row into the hole
                    moved = self._ids[last]
                    self._matrix[index] = self._matrix[last]
                    self._ids[index] = moved
                    self._rows[moved] = index
                self._ids.pop()

    def nearest(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` nearest ids with their cosine distance, nearest first."""
        query = _normalised(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
        with self._lock:
            count = len(self._ids)
            if count == 0:
                return []
            similarity = self._matrix[:count] @ query
            top = min(k, count)
            best = np.argpartition(-similarity, top - 1)[:top]
            best = best[np.argsort(-similarity[best], kind="stable")]
            return [(self._ids[i], float(1.0 - similarity[i])) for i in best]


def _normalised(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1.0, norms)
