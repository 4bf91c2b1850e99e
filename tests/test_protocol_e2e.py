"""The socket protocol against a real daemon: bad bytes and wrong requests are contained."""

from __future__ import annotations

import contextlib
import socket

import msgpack
import pytest

from novad import protocol
from tests.harness import NovaProcess


@pytest.mark.parametrize(
    "payload",
    [
        b"\xdd\xff\xff\xff\xff",  # array header claiming 4 billion items
        b"\xdf\xff\xff\xff\xff",  # map header claiming 4 billion pairs
        b"\xc1" * 64,  # never-used msgpack byte
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"v": 1, "id": 1, "op": "ping", "args": {1: 2}}),
        msgpack.packb({"v": 1, "id": 1, "op": b"\xff\xfe"}, use_bin_type=False),
        msgpack.packb({"v": 1, "id": 1, "op": "ping"})[:5],
    ],
)
def test_malformed_bytes_get_an_error_or_a_closed_connection_and_the_daemon_carries_on(
    shared_daemon: NovaProcess, payload: bytes
) -> None:
    daemon = shared_daemon
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(5)
        raw.connect(str(daemon.socket))
        raw.sendall(payload)
        raw.shutdown(socket.SHUT_WR)
        reply = b"".join(iter(lambda: raw.recv(65536), b""))
    if reply:
        message = msgpack.unpackb(reply, raw=False)
        assert message["ok"] is False and message["error"]["code"]
    assert daemon.call("status")["pid"] == daemon.proc.pid


def test_wrong_requests_get_stable_error_codes_on_a_connection_that_stays_open(
    shared_daemon: NovaProcess,
) -> None:
    daemon = shared_daemon
    cases = [
        (protocol.request(1, "explode"), "unknown-op"),
        (protocol.request(2, "search", {"query": 5}), "bad-args"),
        (protocol.request(3, "search", {"query": "x", "k": 0}), "bad-args"),
        ({"v": 2, "id": 4, "op": "ping"}, "unsupported-version"),
        ({"v": 1, "id": "five", "op": "ping"}, "bad-request"),
    ]
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(10)
        raw.connect(str(daemon.socket))
        unpacker = protocol.make_unpacker()
        for request, code in cases:
            raw.sendall(protocol.pack(request))
            while (reply := next(unpacker, None)) is None:
                unpacker.feed(raw.recv(65536))
            assert (reply["ok"], reply["error"]["code"]) == (False, code), reply
        raw.sendall(protocol.pack(protocol.request(9, "ping")))
        while (reply := next(unpacker, None)) is None:
            unpacker.feed(raw.recv(65536))
        assert reply["id"] == 9 and reply["ok"] is True


def test_oversized_request_is_refused(shared_daemon: NovaProcess) -> None:
    daemon = shared_daemon
    big = protocol.pack(protocol.request(1, "search", {"query": "x" * (2 << 20)}))
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(10)
        raw.connect(str(daemon.socket))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            raw.sendall(big)
        reply = raw.recv(65536)
    assert msgpack.unpackb(reply, raw=False)["error"]["code"] == "too-large"
    assert daemon.call("ping")["version"]


def test_hostile_clients_do_not_grow_memory_or_delay_status(shared_daemon: NovaProcess) -> None:
    import os
    import time

    import psutil

    daemon = shared_daemon
    assert daemon.proc is not None
    proc = psutil.Process(daemon.proc.pid)
    rss_before = proc.memory_info().rss
    hostile = [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", os.urandom(1 << 20)]
    slowest = 0.0
    for payload in hostile * 5:
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(10)
            raw.connect(str(daemon.socket))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                raw.sendall(payload)
            started = time.monotonic()
            assert daemon.call("status")["state"] == "idle"
            slowest = max(slowest, time.monotonic() - started)
    assert proc.memory_info().rss - rss_before < 64 << 20
    assert slowest < 2.0


def test_a_request_dripped_byte_by_byte_is_cut_off(shared_daemon: NovaProcess) -> None:
    import time

    request = b"\xdb\x00\x10\x00\x00"  # a 1 MiB string header, then a drip
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(30)
        raw.connect(str(shared_daemon.socket))
        started = time.monotonic()
        raw.sendall(request)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(20):
                raw.sendall(b"x")
                time.sleep(1)
                if time.monotonic() - started > 12:
                    break
        reply = raw.recv(65536)
    assert msgpack.unpackb(reply, raw=False)["error"]["code"] == "timeout"
    assert time.monotonic() - started < 15
    assert shared_daemon.call("ping")["version"]
