"""A health probe of the vector store, run in a child process before the daemon opens it.

A kill in the middle of a ChromaDB flush can leave a segment that breaks the next open:
sometimes as an exception on the first query, sometimes as a crash inside the native
bindings that no ``try`` survives (TRAPS C07). So before the daemon opens the store itself,
a child process opens it, counts the serving collection and runs one query. If the child
fails or dies, the store is damaged; the daemon sets it aside and rebuilds the index from
the notes instead of crashing on it again and again. The child exits before the daemon
opens the store, so there is never a second process on it (DESIGN: one writer).

Run as ``python -m novad.probe CHROMA_DIR COLLECTION DIMENSION``: exit 0 when healthy, 1
with the reason on stderr otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_REASON_CHARS = 500
_MARK = "nova-probe: "


def probe(chroma_dir: Path, collection: str, dimension: int, timeout_s: float) -> str | None:
    """Check the store in a child process; return why it is damaged, or None if healthy.

    A probe that does not finish in ``timeout_s`` proves nothing either way and counts as
    healthy: the daemon's own open will then say what is wrong.
    """
    args = [sys.executable, "-m", "novad.probe", str(chroma_dir), collection, str(dimension)]
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        return f"opening collection {collection} killed the probe with signal {-done.returncode}"
    ours = [line for line in done.stderr.splitlines() if line.startswith(_MARK)]
    detail = ours[-1].removeprefix(_MARK) if ours else f"the probe exited with {done.returncode}"
    return f"collection {collection} cannot be read: {detail[:_REASON_CHARS]}"


def _check(chroma_dir: Path, collection: str, dimension: int) -> None:
    import chromadb
    import numpy as np
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False, allow_reset=False)
    client = chromadb.PersistentClient(path=str(chroma_dir), settings=settings)
    col = client.get_collection(collection, embedding_function=None)
    if col.count() > 0:
        col.get(limit=1, include=["embeddings"])
        unit = np.zeros((1, dimension), dtype=np.float32)
        unit[0, 0] = 1.0
        col.query(query_embeddings=unit, n_results=1)


def main() -> None:
    """Entry point of the child process."""
    chroma_dir, collection, dimension = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    try:
        _check(chroma_dir, collection, dimension)
    except Exception as exc:
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"{_MARK}{message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
