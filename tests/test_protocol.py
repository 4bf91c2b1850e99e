"""The wire protocol's framing and validation, as pure functions."""

from __future__ import annotations

import msgpack
import pytest

from novad import protocol
from novad.errors import ProtocolError


def unpack_all(data: bytes, max_bytes: int = protocol.DEFAULT_MAX_REQUEST_BYTES) -> list[object]:
    unpacker = protocol.make_unpacker(max_bytes)
    unpacker.feed(data)
    return list(unpacker)


def test_messages_written_back_to_back_come_out_one_by_one() -> None:
    data = protocol.pack(protocol.request(1, "ping")) + protocol.pack(protocol.request(2, "status"))
    assert [m["id"] for m in unpack_all(data)] == [1, 2]  # type: ignore[index]


def test_strings_are_packed_as_str_not_bin() -> None:
    packed = protocol.pack(protocol.ok_reply(1, {"path": "a.md"}))
    assert (
        b"\xc4" not in packed and msgpack.unpackb(packed, raw=True)[b"result"][b"path"] == b"a.md"
    )


@pytest.mark.parametrize("payload", [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff"])
def test_huge_container_headers_are_refused_before_allocating(payload: bytes) -> None:
    with pytest.raises(ValueError):
        unpack_all(payload + b"\x00" * 16)


@pytest.mark.parametrize("payload", [b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff"])
def test_huge_string_headers_wait_only_up_to_the_buffer_cap(payload: bytes) -> None:
    unpacker = protocol.make_unpacker(1024)
    unpacker.feed(payload)
    assert list(unpacker) == []
    with pytest.raises((msgpack.BufferFull, ValueError)):
        for _ in range(3):
            unpacker.feed(b"x" * 600)
            list(unpacker)


def test_a_feed_over_the_size_cap_is_refused() -> None:
    unpacker = protocol.make_unpacker(1024)
    with pytest.raises(msgpack.BufferFull):
        unpacker.feed(b"\x00" * 2048)


def test_integer_map_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        unpack_all(msgpack.packb({"v": 1, "args": {1: 2}}))


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ([1, 2], "bad-request"),
        ({"v": 2, "id": 1, "op": "ping"}, "unsupported-version"),
        ({"v": 1, "id": True, "op": "ping"}, "bad-request"),
        ({"v": 1, "id": 1, "op": ""}, "bad-request"),
        ({"v": 1, "id": 1, "op": "ping", "args": []}, "bad-request"),
    ],
)
def test_malformed_requests_raise_with_a_stable_code(message: object, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.parse_request(message)
    assert info.value.code == code


def test_arguments_are_type_checked_and_bool_is_not_an_int() -> None:
    req = protocol.parse_request(protocol.request(1, "search", {"query": "x", "k": True}))
    assert protocol.get_arg(req, "query", str) == "x"
    assert protocol.get_arg(req, "missing", int, 5) == 5
    with pytest.raises(ProtocolError, match="must be int"):
        protocol.get_arg(req, "k", int)
    with pytest.raises(ProtocolError, match="needs argument"):
        protocol.get_arg(req, "absent", str)


def test_an_int_is_accepted_where_a_float_is_asked_for() -> None:
    req = protocol.parse_request(protocol.request(1, "wait", {"timeout_s": 3}))
    assert protocol.get_arg(req, "timeout_s", float) == 3.0
