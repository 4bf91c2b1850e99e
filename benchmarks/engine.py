"""Work proportional to change, measured on a real corpus: a no-change restart and 1,000 renames.

Usage: .venv/bin/python benchmarks/engine.py [--corpus DIR] [--home DIR] [--renames N]

Copies the corpus (default: the tldr pages of the shared corpus) to ``HOME/notes`` unless a
copy is already there, and lets a real novad index it (the first time this is a whole first
index: half an hour on a 2-core machine; ``benchmarks/first_index.py --corpus HOME/notes
--home HOME`` leaves the same state behind). Then it prints:

- a restart with no change: the time from start to answering, and from start to idle, and
  the startup rescan's own duration, notes stat'ed, notes read and texts embedded
  (targets: the rescan under 1 s, nothing read, nothing embedded);
- renaming N notes (default 1,000) into another folder: texts embedded by the passes that
  follow (target: 0) and the time until the index has caught up.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.corpus import corpus_dir
from tests.harness import NovaProcess, short_tmpdir


def main() -> None:
    """Run the benchmark and print its figures."""
    args = _parse()
    home = args.home or short_tmpdir("nova-engine-")
    source = home / "notes"
    if not source.exists():
        shutil.copytree(args.corpus, source)
    daemon = NovaProcess(source, home, embed_threads=args.embed_threads, log_level="info")

    began = time.monotonic()
    daemon.start()
    first = daemon.wait_idle(timeout_s=4 * 3600)
    print(f"corpus copy           {source}: {first['files']} notes, {first['chunks']} chunks")
    print(f"first start to idle   {time.monotonic() - began:.1f} s")
    daemon.stop()

    _no_change_restart(daemon)
    _renames(daemon, source, args.renames)
    daemon.stop()
    print(f"\nstate kept in {home} (--home {home} reuses it)")


def _no_change_restart(daemon: NovaProcess) -> None:
    before = _texts_embedded_offline(daemon)
    began = time.monotonic()
    daemon.start()
    answering = time.monotonic() - began
    status = daemon.wait_idle()
    idle = time.monotonic() - began
    startup = status["last_pass"]
    embedded = daemon.call("stats")["embedder"]["texts_embedded"] - before
    print("\nrestart, no change")
    print(f"  start to answering  {answering:.2f} s (the socket serves while the model loads)")
    print(f"  start to idle       {idle:.2f} s (includes the model load)")
    print(
        f"  startup rescan      {startup['duration_s']:.3f} s over {startup['files_scanned']}"
        f" notes (target < 1 s); trigger {startup['trigger']}"
    )
    print(f"  notes read          {startup['files_read']} (target 0)")
    print(f"  texts embedded      {embedded} (target 0)")


def _texts_embedded_offline(daemon: NovaProcess) -> int:
    """The persistent ``texts_embedded`` counter, read from the stopped daemon's metrics file."""
    import sqlite3

    db = sqlite3.connect(daemon.state_dir / "metrics.sqlite3")
    try:
        row = db.execute("SELECT value FROM counters WHERE name = 'texts_embedded'").fetchone()
    finally:
        db.close()
    return int(row[0]) if row else 0


def _renames(daemon: NovaProcess, source: Path, count: int) -> None:
    notes = sorted(p for p in source.rglob("*.md") if "renamed" not in p.parts)[:count]
    before = daemon.call("stats")["embedder"]["texts_embedded"]
    chunks_before = daemon.call("status")["chunks"]
    target = source / "renamed"
    began = time.monotonic()
    for path in notes:
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        path.rename(dest)
    status = daemon.wait_idle()
    caught_up = time.monotonic() - began
    embedded = daemon.call("stats")["embedder"]["texts_embedded"] - before
    print(f"\nrenaming {len(notes)} notes into renamed/")
    print(f"  texts embedded      {embedded} (target 0)")
    print(f"  chunks before/after {chunks_before} / {status['chunks']}")
    print(f"  rename to idle      {caught_up:.1f} s")
    print(
        f"  last pass           {status['last_pass']['duration_s']:.1f} s, "
        f"{status['last_pass']['files_changed']} notes changed, "
        f"{status['last_pass']['chunks_reused']} chunks reused"
    )


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = corpus_dir()
    default = base / "pages" if base else None
    parser.add_argument("--corpus", type=Path, default=default, required=default is None)
    parser.add_argument("--home", type=Path, default=None, help="state, socket and notes copy")
    parser.add_argument("--renames", type=int, default=1000, help="notes to rename")
    parser.add_argument(
        "--embed-threads", type=int, default=None, help="override novad's default (cores - 1)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    main()
