"""novactl against a fake daemon: every command, its --json output, and its failures.

The fake speaks the real wire protocol through ``novad.protocol`` on a real Unix socket and
answers from canned results, so these tests pin the client's side of the contract without
a model or a store. End-to-end behaviour against the real novad is tested elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import novactl
from novactl import cli, render
from novactl.client import Client, DaemonError, NotRunning, describe_connect_failure
from novad import protocol
from novad.protocol import Request

Answer = Callable[[Request], list[dict[str, Any]]]

PROGRESS = {
    "kind": "full",
    "trigger": "manual",
    "phase": "embedding",
    "done": 1,
    "total": 3,
    "chunks_embedded": 4,
    "elapsed_s": 0.5,
    "rss_bytes": 200 << 20,
}
PASS = {
    "id": 7,
    "kind": "full",
    "trigger": "manual",
    "started_at": time.time() - 90,
    "duration_s": 2.5,
    "files_scanned": 3,
    "files_changed": 3,
    "files_deleted": 0,
    "files_failed": 0,
    "chunks_embedded": 12,
    "chunks_deleted": 0,
    "chunks_reused": 0,
    "chunks_per_s": 4.8,
    "peak_rss_bytes": 300 << 20,
    "outcome": "ok",
    "error": None,
}
STATUS = {
    "state": "rebuilding",
    "version": "0.1.0",
    "pid": 4242,
    "uptime_s": 3600.0,
    "source": "/home/ada/notes",
    "source_present": True,
    "state_dir": "/home/ada/.local/state/nova",
    "socket": "/run/user/1000/nova/novad.sock",
    "model": "all-MiniLM-L6-v2",
    "dimension": 384,
    "generation": 2,
    "files": 3,
    "chunks": 12,
    "vectors": 11,
    "skipped": 1,
    "pending": 0,
    "watch": {"mode": "native"},
    "pass": PROGRESS,
    "last_pass": PASS,
}
STATS = {
    "store": {
        "notes": 3,
        "chunks": 12,
        "skipped": 1,
        "store_bytes": 5 << 20,
        "state_dir_bytes": 6 << 20,
        "generation": 2,
        "model": "all-MiniLM-L6-v2",
        "dimension": 384,
        "collection": "nova_g2",
    },
    "passes": {
        "total": 4,
        "by_kind": {"full": 1, "incremental": 3},
        "by_trigger": {"manual": 1, "watch": 3},
        "failed": 0,
        "success_rate": 1.0,
        "last_duration_s": 2.5,
        "median_duration_s": 0.2,
        "last_chunks_per_s": 4.8,
        "median_chunks_per_s": 5.0,
        "peak_rss_bytes": 300 << 20,
    },
    "embedder": {"texts_embedded": 40, "chunks_reused": 8},
    "resources": {"rss_bytes": 250 << 20, "cpu_percent": 3.5},
    "skipped_files": [{"path": "bin/blob.md", "reason": "not valid UTF-8"}],
    "warnings": [],
    "recent_passes": [PASS],
}
HIT = {
    "path": "garden/tomatoes.md",
    "heading": "Watering [weekly]",
    "title": "Tomatoes",
    "text": "Water deeply\nonce a week, more in a heat wave.",
    "score": 0.8123,
    "tags": ["garden"],
    "notes": 3,
    "paths": ["garden/tomatoes.md", "garden/z1.md", "garden/z2.md"],
}
CANNED: dict[str, dict[str, Any]] = {
    "ping": {"version": "0.1.0", "pid": 4242},
    "status": STATUS,
    "stats": STATS,
    "search": {"hits": [HIT]},
    "wait": {"waited_s": 0.25},
}
HEAVY_MODULES = {"chromadb", "torch", "sentence_transformers", "onnxruntime", "watchfiles"}


class HangUp(Exception):
    """Raised by an answer to make the fake daemon close the connection without replying."""


class FakeDaemon(socketserver.ThreadingUnixStreamServer):
    """A stand-in novad: reads requests with the real framing, answers from ``answers``."""

    daemon_threads = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: list[Request] = []
        self.answers: dict[str, Answer] = {op: _canned(op) for op in CANNED}
        self.answers["rebuild"] = _rebuild_ok
        super().__init__(str(path), _FakeHandler)


class _FakeHandler(socketserver.BaseRequestHandler):
    """Serve one connection: decode each request, record it, send its canned messages."""

    server: FakeDaemon

    def handle(self) -> None:
        try:
            self._serve()
        except (HangUp, ConnectionError):
            # A client that gives up (Ctrl-C) may close while we still write to it.
            return

    def _serve(self) -> None:
        unpacker = protocol.make_unpacker()
        while data := self.request.recv(65536):
            unpacker.feed(data)
            for obj in unpacker:
                req = protocol.parse_request(obj)
                self.server.requests.append(req)
                for message in self.server.answers[req.op](req):
                    self.request.sendall(protocol.pack(message))


def _canned(op: str) -> Answer:
    """An answer that replies with the canned result of ``op``."""
    return lambda req: [protocol.ok_reply(req.id, CANNED[op])]


def _rebuild_ok(req: Request) -> list[dict[str, Any]]:
    """Three progress events, a message for another request, then the finished pass."""
    events = [
        protocol.event(req.id, {"pass": {**PROGRESS, "done": done, "elapsed_s": done / 2}})
        for done in (1, 2, 3)
    ]
    stray = protocol.event(req.id + 100, {"pass": PROGRESS})
    return [*events, stray, protocol.ok_reply(req.id, {**PASS, "admission": "started"})]


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short temporary directory for sockets (AF_UNIX paths are limited to ~107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="nova-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(socket_dir: Path) -> Iterator[FakeDaemon]:
    """A fake daemon serving on ``socket_dir/novad.sock`` in a background thread."""
    server = FakeDaemon(socket_dir / "novad.sock")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-novad")
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def run(sock: Path, *args: str, timeout_s: float = 2.0, **kwargs: Any) -> Result:
    """Invoke novactl with ``--socket sock`` and a short timeout."""
    options = ["--socket", str(sock), "--timeout", str(timeout_s)]
    return CliRunner().invoke(cli.main, [*options, *args], **kwargs)


def flat(text: str) -> str:
    """``text`` with all runs of whitespace made single spaces, to ignore line wrapping."""
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ping"], ["novad 0.1.0", "4242"]),
        (
            ["status"],
            [
                "rebuilding",
                "/home/ada/notes",
                "(present)",
                "native",
                "embedding",
                "11 distinct texts",
            ],
        ),
        (["stats"], ["nova_g2", "100.0 %", "bin/blob.md", "not valid UTF-8", "Recent passes"]),
        (
            ["search", "how", "often", "to", "water"],
            ["0.812", "tomatoes.md", "[weekly]", "+2 more notes"],
        ),
        (["wait"], ["Caught up", "250 ms"]),
    ],
)
def test_each_command_renders_its_result(
    daemon: FakeDaemon, args: list[str], expected: list[str]
) -> None:
    result = run(daemon.path, *args)

    assert result.exit_code == 0, result.output
    for text in expected:
        assert text in flat(result.stdout)


@pytest.mark.parametrize(
    ("args", "keys"),
    [
        (["ping"], {"version", "pid"}),
        (["status"], {"state", "source", "source_present", "files", "chunks", "pass"}),
        (["stats"], {"store", "passes", "embedder", "resources", "skipped_files"}),
        (["wait"], {"waited_s"}),
        (["rebuild"], {"id", "outcome", "files_scanned", "chunks_embedded", "admission"}),
    ],
)
def test_json_prints_the_raw_result_only(
    daemon: FakeDaemon, args: list[str], keys: set[str]
) -> None:
    result = run(daemon.path, *args, "--json")

    assert result.exit_code == 0, result.output
    assert keys <= set(json.loads(result.stdout))


def test_search_json_prints_the_list_of_hits(daemon: FakeDaemon) -> None:
    result = run(daemon.path, "search", "water", "-k", "3", "--json")

    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert [hit["path"] for hit in hits] == ["garden/tomatoes.md"]
    assert {"path", "heading", "text", "score"} <= set(hits[0])
    assert daemon.requests[-1].args == {"query": "water", "k": 3}


def test_rebuild_follows_progress_events_then_prints_the_summary(daemon: FakeDaemon) -> None:
    # As on a terminal: the bar is drawn.
    result = run(daemon.path, "rebuild", env={"TTY_COMPATIBLE": "1", "NO_COLOR": "1"})

    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "3/3" in out
    assert "files/s" in out
    assert "full pass #7 (manual) ok in 2.5 s" in out
    assert "12 chunks embedded" in out
    assert daemon.requests[-1].args == {"full": False}


def test_piped_rebuild_prints_the_summary_without_a_progress_bar(daemon: FakeDaemon) -> None:
    result = run(daemon.path, "rebuild", env={"TTY_COMPATIBLE": "0"})

    assert result.exit_code == 0, result.output
    assert "full pass #7 (manual) ok in 2.5 s" in flat(result.stdout)
    assert "3/3" not in result.stdout and "files/s" not in result.stdout


def test_client_passes_only_its_own_events_to_the_callback(daemon: FakeDaemon) -> None:
    events: list[dict[str, Any]] = []
    with Client(daemon.path, timeout_s=2) as client:
        result = client.call("rebuild", {"full": False}, events.append)
        second = client.call("ping")

    assert [event["pass"]["done"] for event in events] == [1, 2, 3]
    assert result["outcome"] == "ok"
    assert second["version"] == "0.1.0"
    assert [req.id for req in daemon.requests] == [1, 2]


def test_rebuild_json_prints_only_the_summary(daemon: FakeDaemon) -> None:
    result = run(daemon.path, "rebuild", "--full", "--force", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outcome"] == "ok"
    assert daemon.requests[-1].args == {"full": True}


def test_failed_pass_exits_1_with_its_error(daemon: FakeDaemon) -> None:
    failed = {**PASS, "outcome": "failed", "error": "disk full", "admission": "started"}
    daemon.answers["rebuild"] = lambda req: [protocol.ok_reply(req.id, failed)]

    result = run(daemon.path, "rebuild")

    assert result.exit_code == 1
    assert "pass #7 failed: disk full" in flat(result.stderr)


@pytest.mark.parametrize("outcome", ["failed", "skipped", "cancelled"])
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_pass_that_does_not_end_ok_exits_1_with_its_reason(
    daemon: FakeDaemon, outcome: str, json_flag: list[str]
) -> None:
    reason = "source folder /home/ada/notes is missing"
    ended = {**PASS, "id": 41, "outcome": outcome, "error": reason, "admission": "started"}
    daemon.answers["rebuild"] = lambda req: [protocol.ok_reply(req.id, ended)]

    result = run(daemon.path, "rebuild", *json_flag)

    assert result.exit_code == 1, result.output
    assert f"pass #41 {outcome}: {reason}" in flat(result.stderr)


def test_full_rebuild_without_tty_or_force_is_refused(daemon: FakeDaemon) -> None:
    result = run(daemon.path, "rebuild", "--full")

    assert result.exit_code == 2
    assert "Add --force" in flat(result.stderr)
    assert daemon.requests == []


def test_full_rebuild_asks_on_a_tty(daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_stdin_is_tty", lambda: True)

    declined = run(daemon.path, "rebuild", "--full", input="n\n")
    accepted = run(daemon.path, "rebuild", "--full", input="y\n")

    assert declined.exit_code == 1
    assert "full rebuild cancelled" in declined.stderr
    assert accepted.exit_code == 0, accepted.output
    assert [req.args for req in daemon.requests] == [{"full": True}]


def test_error_reply_exits_1_with_the_daemons_message(daemon: FakeDaemon) -> None:
    daemon.answers["status"] = lambda req: [
        protocol.error_reply(req.id, protocol.INTERNAL, "the store is locked")
    ]

    result = run(daemon.path, "status", "--json")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert "`status` failed: the store is locked [internal]" in flat(result.stderr)


def test_wait_that_times_out_exits_non_zero(daemon: FakeDaemon) -> None:
    daemon.answers["wait"] = lambda req: [
        protocol.error_reply(req.id, protocol.TIMEOUT, "3 notes still pending after 0.1 s")
    ]

    result = run(daemon.path, "wait", "--timeout", "0.1")

    assert result.exit_code == 1
    assert "3 notes still pending" in flat(result.stderr)
    assert daemon.requests[-1].args == {"timeout_s": 0.1}


def test_daemon_error_raises_with_its_code(daemon: FakeDaemon) -> None:
    daemon.answers["ping"] = lambda req: [protocol.error_reply(req.id, "not-ready", "warming up")]

    with Client(daemon.path, timeout_s=2) as client, pytest.raises(DaemonError) as caught:
        client.call("ping")

    assert (caught.value.code, caught.value.message) == ("not-ready", "warming up")


def test_missing_socket_exits_3_naming_the_path(socket_dir: Path) -> None:
    missing = socket_dir / "novad.sock"

    result = run(missing, "ping")

    assert result.exit_code == 3
    assert f"no daemon is listening on {missing} (no such socket file)" in flat(result.stderr)
    assert "novad --source DIR" in flat(result.stderr)
    assert "Traceback" not in result.output


def test_stale_socket_exits_3_saying_connection_refused(socket_dir: Path) -> None:
    stale = socket_dir / "novad.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as orphan:
        orphan.bind(str(stale))

    result = run(stale, "status")

    assert result.exit_code == 3
    assert f"{stale} (connection refused" in flat(result.stderr)


def test_silent_daemon_exits_3_saying_it_is_not_answering(daemon: FakeDaemon) -> None:
    daemon.answers["ping"] = lambda req: []

    result = run(daemon.path, "ping", timeout_s=0.2)

    assert result.exit_code == 3
    assert "is not answering (no reply to `ping` within 0.2 s)" in flat(result.stderr)


def test_daemon_that_hangs_up_counts_as_not_running(daemon: FakeDaemon) -> None:
    def hang_up(req: Request) -> list[dict[str, Any]]:
        raise HangUp

    daemon.answers["ping"] = hang_up

    with Client(daemon.path, timeout_s=2) as client, pytest.raises(NotRunning) as caught:
        client.call("ping")

    assert "closed the connection before answering `ping`" in str(caught.value)


def long_socket_path(socket_dir: Path) -> Path:
    """A socket path of 130 bytes or more, over the 107-byte limit of Unix sockets."""
    path = socket_dir / ("d" * 60) / ("s" * 60 + ".sock")
    assert len(os.fsencode(str(path))) > 107
    return path


def test_a_socket_path_too_long_says_so_and_how_to_fix_it(socket_dir: Path) -> None:
    result = run(long_socket_path(socket_dir), "status")

    assert result.exit_code == 3
    message = flat(result.stderr)
    assert "too long for a Unix socket (at most 107 bytes)" in message
    assert "shorter path with --socket or NOVA_SOCKET" in message
    assert "novad --source" not in message
    assert "AF_UNIX" not in message


def test_wait_does_not_wait_for_a_daemon_on_a_socket_path_too_long(socket_dir: Path) -> None:
    env = {"NOVA_SOCKET": str(long_socket_path(socket_dir))}
    began = time.monotonic()

    result = CliRunner().invoke(cli.main, ["wait", "--timeout", "30"], env=env)

    assert result.exit_code == 3
    assert "too long for a Unix socket" in flat(result.stderr)
    assert time.monotonic() - began < 5, "no daemon can ever listen there"


def test_permission_denied_says_who_may_connect() -> None:
    path = Path("/run/nova/novad.sock")

    message = describe_connect_failure(path, PermissionError(13, "denied"), 5.0)

    assert message.startswith(f"permission denied on {path}")
    assert "daemon's user or a member of its group" in message


def test_help_documents_the_exit_codes() -> None:
    result = CliRunner().invoke(cli.main, ["--help"])

    assert result.exit_code == 0
    for line in ("0    success", "1    the daemon answered", "3    no daemon reachable"):
        assert line in result.stdout
    assert "its pass did not end ok (failed, skipped or cancelled)" in flat(result.stdout)


def test_importing_the_client_pulls_in_nothing_heavy() -> None:
    code = (
        "import sys, novactl, novactl.cli, novactl.client, novactl.render\n"
        "print(' '.join({name.split('.')[0] for name in sys.modules}))\n"
    )
    root = Path(novactl.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )

    assert HEAVY_MODULES.isdisjoint(done.stdout.split())


def test_ctrl_c_during_rebuild_exits_130_without_a_traceback(
    daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(self: object, event: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(render.PassProgress, "on_event", interrupt)

    result = run(daemon.path, "rebuild")

    assert result.exit_code == 130
    assert "interrupted while waiting for `rebuild`" in flat(result.stderr)
    assert "Traceback" not in result.output


def test_wait_rides_out_a_daemon_that_is_still_starting(socket_dir: Path) -> None:
    """`novad ... & novactl wait`: the socket appears a moment after wait starts."""
    path = socket_dir / "novad.sock"
    servers: list[FakeDaemon] = []

    def start_late() -> None:
        time.sleep(0.8)
        servers.append(FakeDaemon(path))
        servers[0].serve_forever(0.05)

    thread = threading.Thread(target=start_late, daemon=True)
    thread.start()
    result = run(path, "wait", "--timeout", "20")
    servers[0].shutdown()
    servers[0].server_close()
    thread.join(5)

    assert result.exit_code == 0, result.output
    assert "Caught up" in result.stdout


def test_wait_without_any_daemon_gives_up_at_its_timeout_with_exit_3(socket_dir: Path) -> None:
    began = time.monotonic()
    result = run(socket_dir / "novad.sock", "wait", "--timeout", "1")
    assert result.exit_code == 3
    assert 0.5 <= time.monotonic() - began < 10, "it knocked until about its timeout"
    assert "no such socket file" in flat(result.stderr)
