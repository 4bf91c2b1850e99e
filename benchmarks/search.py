"""Search cost: exact ranking in memory, and search round trips on a real daemon.

Usage: .venv/bin/python benchmarks/search.py [--home DIR] [--queries N]

First ranks random 384-dimension vectors with ``novad.exact.ExactIndex`` at notes-folder
sizes (10,000 to 300,000 distinct texts) and prints the median time of one query and the
memory the vectors take. Then, with ``--home`` (a state that ``benchmarks/engine.py`` or
``benchmarks/first_index.py --home`` left), starts novad on it and times the ``search``
round trip: the first one (which reads every vector from ChromaDB) and the median of N
more, each with its own query.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from novad.exact import ExactIndex
from tests.harness import NovaProcess

_SIZES = (10_000, 100_000, 300_000)
_QUERIES = [
    "how do I undo a commit",
    "list files sorted by size",
    "compress a folder into an archive",
    "show disk usage",
    "find text in files recursively",
    "convert a video to another format",
    "kill a process by name",
    "download a file from the web",
]


def main() -> None:
    """Run the benchmark and print its figures."""
    args = _parse()
    print("exact ranking in memory (384 dimensions, k = 10)")
    for size in _SIZES:
        _rank(size)
    if args.home is not None:
        _round_trips(args.home, args.queries)


def _rank(size: int) -> None:
    rng = np.random.default_rng(0)
    index = ExactIndex()
    for start in range(0, size, 10_000):
        ids = [f"t{i}" for i in range(start, start + 10_000)]
        index.put(ids, rng.normal(size=(10_000, 384)).astype(np.float32))
    timings = []
    for _ in range(50):
        query = rng.normal(size=384).astype(np.float32)
        began = time.perf_counter()
        index.nearest(query, 10)
        timings.append(time.perf_counter() - began)
    memory = size * 384 * 4 / 2**20
    print(
        f"  {size:>7,} texts     median {statistics.median(timings) * 1000:6.2f} ms,"
        f" max {max(timings) * 1000:6.2f} ms; vectors {memory:,.0f} MiB"
    )


def _round_trips(home: Path, queries: int) -> None:
    daemon = NovaProcess(home / "notes", home, log_level="info")
    daemon.start()
    status = daemon.wait_idle(timeout_s=3600)
    began = time.perf_counter()
    daemon.search(_QUERIES[0], k=10)
    first = time.perf_counter() - began
    timings = []
    for number in range(queries):
        began = time.perf_counter()
        daemon.search(f"{_QUERIES[number % len(_QUERIES)]} {number}", k=10)
        timings.append(time.perf_counter() - began)
    daemon.stop()
    print(f"\nsearch round trip on {home} ({status['vectors']:,} distinct texts, k = 10)")
    print(f"  first search        {first * 1000:.0f} ms (reads every vector from ChromaDB)")
    print(
        f"  next {queries} searches    median {statistics.median(timings) * 1000:.1f} ms,"
        f" max {max(timings) * 1000:.1f} ms (each embeds its query, then ranks)"
    )


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="state left by engine.py")
    parser.add_argument("--queries", type=int, default=50, help="searches to time")
    return parser.parse_args()


if __name__ == "__main__":
    main()
