"""First full index of a corpus by a real novad: time, chunks/s, peak memory, status latency.

Usage: .venv/bin/python benchmarks/first_index.py [--corpus DIR] [--embed-threads N]

Starts novad on DIR with a fresh state dir, waits until it is idle, samples ``status``
round-trips and the daemon's RSS every 0.5 s meanwhile, then prints the figures and the
output of ``novactl status`` and ``novactl stats``. The default corpus is the tldr pages
in ../shared/corpus/pages (or $NOVA_TEST_CORPUS/pages).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.corpus import corpus_dir
from tests.harness import NovaProcess, short_tmpdir


def main() -> None:
    """Run the benchmark and print its figures."""
    args = _parse()
    home = args.home or short_tmpdir("nova-bench-")
    home.mkdir(parents=True, exist_ok=True)
    daemon = NovaProcess(args.corpus, home, embed_threads=args.embed_threads, log_level="info")
    started = time.monotonic()
    daemon.start()
    assert daemon.proc is not None
    sampler = _Sampler(daemon)
    sampler.start()
    status = daemon.wait_idle(timeout_s=4 * 3600)
    elapsed = time.monotonic() - started
    sampler.stop()
    stats = daemon.call("stats")
    first = stats["recent_passes"][-1]
    print(f"corpus                {args.corpus}")
    print(
        f"notes / chunks        {status['files']} / {status['chunks']}"
        f" ({status['skipped']} skipped)"
    )
    print(f"start to idle         {elapsed:.1f} s (includes model load)")
    print(
        f"first pass            {first['duration_s']:.1f} s, {first['chunks_per_s']:.1f} chunks/s"
    )
    print(
        f"peak RSS (sampled)    {sampler.peak_rss / 2**20:.0f} MiB;"
        f" pass-reported {first['peak_rss_bytes'] / 2**20:.0f} MiB"
    )
    print(
        f"status round-trip     p50 {sampler.pct(50):.1f} ms, p99 {sampler.pct(99):.1f} ms,"
        f" max {max(sampler.latencies_ms):.1f} ms over {len(sampler.latencies_ms)} calls"
    )
    for command in ("status", "stats"):
        print(f"\n$ novactl {command}")
        sys.stdout.flush()
        subprocess.run(
            [sys.executable, "-m", "novactl", "--socket", str(daemon.socket), command], check=False
        )
    daemon.stop()
    print(f"\nstate kept in {home} (benchmarks/engine.py --home {home} reuses it)")


class _Sampler(threading.Thread):
    def __init__(self, daemon: NovaProcess) -> None:
        super().__init__(daemon=True)
        self._daemon = daemon
        assert daemon.proc is not None
        self._proc = psutil.Process(daemon.proc.pid)
        self._halt = threading.Event()
        self.latencies_ms: list[float] = []
        self.peak_rss = 0

    def run(self) -> None:
        with self._daemon.client() as client:
            while not self._halt.wait(0.5):
                began = time.perf_counter()
                client.call("status")
                self.latencies_ms.append((time.perf_counter() - began) * 1000)
                self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def pct(self, q: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = corpus_dir()
    default = base / "pages" if base else None
    parser.add_argument("--corpus", type=Path, default=default, required=default is None)
    parser.add_argument(
        "--embed-threads", type=int, default=None, help="override novad's default (cores - 1)"
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="keep state dir and socket here (default: a temp dir)",
    )
    args = parser.parse_args()
    return args


if __name__ == "__main__":
    main()
