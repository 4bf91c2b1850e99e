"""Kill -9 torture: a real daemon on a sample of the vault, killed mid-pass, again and again.

A seeded writer creates, edits, renames and deletes notes while the daemon runs
incremental passes or a full rebuild; the daemon is killed with SIGKILL at a random moment
of the pass, restarted, and once idle its real ChromaDB store must hold exactly the chunks
an independent reading of the files gives: no stale, missing or duplicate chunk (invariant
1), and every search made during a full rebuild returns a whole result set (invariant 2).

``NOVA_TORTURE_SEED`` replays a run (the seed is printed and named in every failure);
``NOVA_TORTURE_KILLS`` (default 30) and ``NOVA_TORTURE_NOTES`` (default 60) size it.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from novactl.client import Client, ClientError, DaemonError
from tests.corpus import require_corpus
from tests.harness import NovaProcess, expected_chunks, read_store, short_tmpdir

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

KILLS = int(os.environ.get("NOVA_TORTURE_KILLS", "30"))
NOTES = int(os.environ.get("NOVA_TORTURE_NOTES", "60"))
SEARCH_K = 5


class Writer(threading.Thread):
    """Changes notes the way a user and a sync tool do, until stopped."""

    def __init__(self, source: Path, pool: list[str], rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.source = source
        self.pool = pool
        self.rng = rng
        self.halt = threading.Event()
        self.done: Counter[str] = Counter()

    def notes(self) -> list[Path]:
        return sorted(p for p in self.source.rglob("*.md") if p.is_file())

    def run(self) -> None:
        burst = self.rng.randrange(3, 15)  # a sync client dropping a batch, then a trickle
        while not self.halt.wait(0 if burst > 0 else self.rng.uniform(0.02, 0.3)):
            burst -= 1
            notes = self.notes()
            action = self.rng.choice(["create", "edit", "edit", "rename", "delete"])
            if len(notes) < NOTES // 2:
                action = "create"
            try:
                getattr(self, action)(notes)
                self.done[action] += 1
            except (FileNotFoundError, UnicodeDecodeError):
                continue

    def create(self, notes: list[Path]) -> None:
        folder = self.source / self.rng.choice(["", "new", "new/deeper", "inbox"])
        folder.mkdir(parents=True, exist_ok=True)
        name = f"w{self.rng.randrange(10**6)}.md"
        (folder / name).write_text(self.rng.choice(self.pool), encoding="utf-8")

    def edit(self, notes: list[Path]) -> None:
        note = self.rng.choice(notes)
        text = note.read_text(encoding="utf-8")
        paragraphs = text.split("\n\n")
        borrowed = self.rng.choice(self.pool).split("\n\n")
        if self.rng.random() < 0.5 and len(paragraphs) > 1:
            paragraphs[self.rng.randrange(len(paragraphs))] = self.rng.choice(borrowed)
        else:
            paragraphs.append(f"Edit {self.rng.randrange(10**6)}: {self.rng.choice(borrowed)}")
        note.write_text("\n\n".join(paragraphs), encoding="utf-8")

    def rename(self, notes: list[Path]) -> None:
        note = self.rng.choice(notes)
        folder = self.source / self.rng.choice(["", "moved", "moved/again"])
        folder.mkdir(parents=True, exist_ok=True)
        note.rename(folder / f"r{self.rng.randrange(10**6)}-{note.name}")

    def delete(self, notes: list[Path]) -> None:
        self.rng.choice(notes).unlink()


class Searcher(threading.Thread):
    """Asks the daemon again and again; collects any short or empty answer."""

    def __init__(self, daemon: NovaProcess) -> None:
        super().__init__(daemon=True)
        self.daemon_proc = daemon
        self.halt = threading.Event()
        self.answers = 0
        self.short: list[int | str] = []

    def run(self) -> None:
        while not self.halt.wait(0.05):
            try:
                with Client(self.daemon_proc.socket, 30.0) as client:
                    reply = client.call("search", {"query": "how to organise tasks", "k": SEARCH_K})
            except DaemonError as exc:
                if exc.code != "not-ready":  # still starting is fine; a failed search is not
                    self.short.append(f"{exc.code}: {exc}")
                continue
            except ClientError:
                continue  # killed or restarting: not an answer
            self.answers += 1
            if len(reply["hits"]) != SEARCH_K:
                self.short.append(len(reply["hits"]))


def _sample_vault(corpus: Path, source: Path, rng: random.Random) -> list[str]:
    vault = corpus / "vault"
    notes = sorted(p for p in vault.rglob("*.md") if ".obsidian" not in p.parts and p.is_file())
    chosen = rng.sample(notes, NOTES + 100)
    for path in chosen[:NOTES]:
        target = source / path.relative_to(vault)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return [p.read_text(encoding="utf-8", errors="replace") for p in chosen[NOTES:]]


def _start_full_rebuild(daemon: NovaProcess) -> None:
    def ask() -> None:
        # The kill cuts the reply short, as it should.
        with contextlib.suppress(ClientError):
            daemon.call("rebuild", {"full": True}, read_timeout_s=3600)

    threading.Thread(target=ask, daemon=True).start()


def _kill_during(daemon: NovaProcess, kind: str, fraction: float) -> str:
    """Kill the daemon once a pass of ``kind`` has done ``fraction`` of its notes.

    A fraction past 1 kills as the pass ends (its last commit, a generation switch).
    Returns where the kill landed: mid-pass, or between passes if it ended first.
    """
    deadline = time.monotonic() + 60.0
    seen = False
    while time.monotonic() < deadline:
        running = daemon.call("status")["pass"]
        if running is not None and running["kind"] == kind:
            seen = True
            if running["total"] and running["done"] >= fraction * running["total"]:
                daemon.kill()
                return f"{kind} mid-pass"
        elif seen:
            break
        time.sleep(0.01)
    daemon.kill()
    return f"{kind} between passes"


def _check_store(daemon: NovaProcess, seed: int, round_no: int) -> None:
    daemon.stop()
    stored = {path: Counter(texts) for path, texts in read_store(daemon.state_dir).items()}
    wanted = {path: Counter(texts) for path, texts in expected_chunks(daemon.source).items()}
    wanted = {path: texts for path, texts in wanted.items() if texts}
    where = f"seed {seed}, round {round_no}; log {daemon.log_path}"
    assert set(stored) - set(wanted) == set(), f"stale notes in the store ({where})"
    assert set(wanted) - set(stored) == set(), f"notes missing from the store ({where})"
    for path, texts in wanted.items():
        assert stored[path] == texts, f"{path}: chunks differ from the file ({where})"


@pytest.mark.timeout(3 * 3600)
def test_kill_nine_at_random_moments_never_breaks_the_index() -> None:
    corpus = require_corpus()
    seed = int(os.environ.get("NOVA_TORTURE_SEED", random.randrange(2**32)))
    print(f"torture seed {seed} (replay: NOVA_TORTURE_SEED={seed})")
    rng = random.Random(seed)
    home = short_tmpdir("nova-torture-")
    source = home / "vault"
    pool = _sample_vault(corpus, source, rng)
    daemon = NovaProcess(source, home, log_level="info")
    daemon.start().wait_idle()
    _check_store(daemon, seed, 0)

    landed: Counter[str] = Counter()
    searches = 0
    for round_no in range(1, KILLS + 1):
        kind = "full" if round_no % 2 == 0 else "incremental"
        daemon.start()
        daemon.wait_idle()
        writer = Writer(source, pool, random.Random(rng.random()))
        searcher = Searcher(daemon)
        writer.start()
        if kind == "full":
            searcher.start()
            _start_full_rebuild(daemon)
        # Kill anywhere in the pass: while embedding, writing, committing or switching.
        landed[_kill_during(daemon, kind, rng.uniform(0.0, 1.05))] += 1
        writer.halt.set()
        searcher.halt.set()
        writer.join()
        if kind == "full":
            searcher.join()
        assert searcher.short == [], (
            f"searches during a full rebuild came back short: {searcher.short} (seed {seed})"
        )
        searches += searcher.answers

        daemon.start()
        daemon.wait_idle()
        _check_store(daemon, seed, round_no)

    print(f"torture seed {seed}: kills {dict(landed)}, {searches} searches during full rebuilds")
    assert landed["full mid-pass"] >= KILLS // 4, f"too few kills landed in full passes: {landed}"
    assert landed["incremental mid-pass"] >= KILLS // 4, f"too few in incremental: {landed}"
    assert searches > 0, "no search was answered during a full rebuild"
    shutil.rmtree(home, ignore_errors=True)
