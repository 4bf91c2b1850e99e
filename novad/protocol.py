"""The wire protocol shared by novad and novactl: msgpack maps written back to back.

A request is ``{"v": 1, "id": int, "op": str, "args": map}``. The daemon answers with
``{"v": 1, "id": id, "ok": true, "result": map}`` or ``{"v": 1, "id": id, "ok": false,
"error": {"code": slug, "message": text}}``; streaming ops first send any number of
``{"v": 1, "id": id, "event": map}``. msgpack is self-delimiting, so there is no length
prefix: each side feeds bytes into a streaming ``Unpacker`` and takes whole objects out.

Trade-offs and limits:

* The unpacker is built with explicit caps on buffer, string, binary, array and map
  lengths, so a five-byte header that claims four billion elements is refused before any
  memory is reserved (msgpack-python#97). A request over ``max_request_bytes`` is refused
  with ``too-large`` and the connection is closed.
* Map keys must be strings (``strict_map_key``) and strings must be valid UTF-8; both
  failures are ``bad-msgpack``.
* Strings are packed as msgpack str, never bin, and no extension types are used, so a
  client in any language can speak this.

This module imports msgpack and the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from novad.errors import ProtocolError

PROTOCOL_VERSION = 1
DEFAULT_MAX_REQUEST_BYTES = 1 << 20
MAX_REPLY_BYTES = 64 << 20
_MAX_CONTAINER_LEN = 10_000
# Limits of the search op, shared so the client can check them before asking.
MAX_K = 100
MAX_QUERY_CHARS = 4000

# Stable error codes; the README lists what each means.
BAD_MSGPACK = "bad-msgpack"
BAD_REQUEST = "bad-request"
UNSUPPORTED_VERSION = "unsupported-version"
UNKNOWN_OP = "unknown-op"
BAD_ARGS = "bad-args"
TOO_LARGE = "too-large"
NOT_READY = "not-ready"
TIMEOUT = "timeout"
PASS_FAILED = "pass-failed"
SOURCE_MISSING = "source-missing"
BUSY = "busy"
SHUTTING_DOWN = "shutting-down"
INTERNAL = "internal"

_REQUIRED = object()


@dataclass(frozen=True)
class Request:
    """One decoded, validated request."""

    id: int
    op: str
    args: dict[str, Any]


def make_unpacker(max_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> msgpack.Unpacker:
    """Return a streaming unpacker whose every length is capped by ``max_bytes``."""
    return msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        use_list=True,
        max_buffer_size=max_bytes,
        max_str_len=max_bytes,
        max_bin_len=max_bytes,
        max_array_len=min(max_bytes, _MAX_CONTAINER_LEN),
        max_map_len=min(max_bytes, _MAX_CONTAINER_LEN),
        max_ext_len=0,
    )


def pack(message: dict[str, Any]) -> bytes:
    """Encode one message; strings as msgpack str, bytes never expected."""
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


def request(req_id: int, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build a request message."""
    return {"v": PROTOCOL_VERSION, "id": req_id, "op": op, "args": args or {}}


def ok_reply(req_id: int | None, result: dict[str, Any]) -> dict[str, Any]:
    """Build a success reply."""
    return {"v": PROTOCOL_VERSION, "id": req_id, "ok": True, "result": result}


def error_reply(req_id: int | None, code: str, message: str) -> dict[str, Any]:
    """Build an error reply with a stable ``code`` and a human ``message``."""
    error = {"code": code, "message": message}
    return {"v": PROTOCOL_VERSION, "id": req_id, "ok": False, "error": error}


def event(req_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    """Build one streamed event of a long-running op."""
    return {"v": PROTOCOL_VERSION, "id": req_id, "event": payload}


def request_id_of(obj: object) -> int | None:
    """Best-effort id of a message that may be malformed, so its error reply can carry it."""
    if isinstance(obj, dict):
        req_id = obj.get("id")
        if isinstance(req_id, int) and not isinstance(req_id, bool):
            return req_id
    return None


def parse_request(obj: object) -> Request:
    """Validate one decoded message as a request, raising ProtocolError with a stable code."""
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_REQUEST, f"a request must be a map, got {type(obj).__name__}")
    if obj.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            UNSUPPORTED_VERSION, f"protocol version {obj.get('v')!r} is not supported; use 1"
        )
    req_id = request_id_of(obj)
    if req_id is None:
        raise ProtocolError(BAD_REQUEST, "field 'id' must be an integer")
    op = obj.get("op")
    if not isinstance(op, str) or not op:
        raise ProtocolError(BAD_REQUEST, "field 'op' must be a non-empty string")
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(BAD_REQUEST, "field 'args' must be a map")
    return Request(id=req_id, op=op, args=args)


def check_args(req: Request, allowed: set[str]) -> None:
    """Refuse arguments the op does not know (a client bug, or a newer client)."""
    unknown = sorted(set(req.args) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ProtocolError(
            BAD_ARGS,
            f"op '{req.op}' has no argument {', '.join(map(repr, unknown))}; it takes: {known}",
        )


def get_arg(req: Request, name: str, kind: type, default: Any = _REQUIRED) -> Any:
    """Return ``req.args[name]`` checked against ``kind``; raise ``bad-args`` otherwise.

    ``bool`` is not accepted where ``int`` is asked for, and an ``int`` is accepted where
    ``float`` is.
    """
    if name not in req.args:
        if default is _REQUIRED:
            raise ProtocolError(BAD_ARGS, f"op '{req.op}' needs argument '{name}'")
        return default
    value = req.args[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(
            BAD_ARGS,
            f"argument '{name}' of op '{req.op}' must be {kind.__name__}, "
            f"got {type(value).__name__}",
        )
    return value
