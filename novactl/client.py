"""A small synchronous client for novad's Unix socket.

One ``Client`` holds one connection, opened by the first call and reused by the next ones,
and numbers its requests 1, 2, 3 and on. A call writes one request, then reads messages
until the reply carrying the same id, handing each event for that id to a callback on the
way. Messages for other ids are stale (an earlier call gave up on them) and are dropped.

Timeouts are idle timeouts: ``timeout_s`` bounds the connect and every wait for the *next*
message, so a long pass that keeps streaming events never times out, while a daemon that
goes silent does. A call may widen the bound or lift it (``math.inf``): ``wait`` needs its
own timeout plus a margin, and a rebuild can go quiet while one large note is embedded.
After a timeout or an unreadable reply the connection is closed, because the position in
the stream is no longer known; the next call reconnects.

Every failure is a ``NovaError``; library and socket errors are converted here::

    ClientError
    ├── NotRunning    no daemon reachable: socket missing, stale, forbidden, silent or gone
    │   └── SocketPathTooLong   the path cannot be a Unix socket's; no daemon can be there
    ├── DaemonError   the daemon answered ``ok: false``; carries its stable ``code``
    └── BadReply      the daemon sent something that is not a valid reply
"""

from __future__ import annotations

import logging
import math
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import msgpack

from novad.errors import NovaError
from novad.paths import MAX_SOCKET_PATH_BYTES, socket_path_too_long
from novad.protocol import MAX_REPLY_BYTES, make_unpacker, pack, request

logger = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], None]

START_HINT = (
    "Start one with `novad --source DIR`, or point --socket / NOVA_SOCKET at the right socket."
)
_RECV_BYTES = 64 * 1024


class ClientError(NovaError):
    """Root of the errors a ``Client`` call raises."""


class NotRunning(ClientError):
    """No daemon can be reached on the socket; the message says why and what to do."""


class SocketPathTooLong(NotRunning):
    """The socket path is over the Unix socket limit, so waiting for a daemon there is futile."""


class BadReply(ClientError):
    """The daemon sent bytes or a message that is not a valid reply."""


class DaemonError(ClientError):
    """The daemon answered ``ok: false``; ``code`` is the protocol's stable slug."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def describe_long_socket_path(path: Path) -> str:
    """Explain that ``path`` is too long to be a Unix socket, and how to name a shorter one."""
    size = len(os.fsencode(str(path)))
    return (
        f"the socket path {path} is {size} bytes, too long for a Unix socket (at most "
        f"{MAX_SOCKET_PATH_BYTES} bytes). Pass a shorter path with --socket or NOVA_SOCKET."
    )


def describe_connect_failure(path: Path, exc: OSError, timeout_s: float) -> str:
    """Explain why connecting to ``path`` failed and what the user can do about it."""
    if isinstance(exc, FileNotFoundError):
        return f"no daemon is listening on {path} (no such socket file). {START_HINT}"
    if isinstance(exc, PermissionError):
        return (
            f"permission denied on {path}: this user may not talk to the daemon. Run novactl "
            "as the daemon's user or a member of its group, or point --socket / NOVA_SOCKET "
            "at a socket you may use."
        )
    if isinstance(exc, TimeoutError):
        return (
            f"the daemon at {path} is not answering (no connection within {timeout_s:g} s). "
            "It may be overloaded or hung: check its log, or raise --timeout."
        )
    if isinstance(exc, BlockingIOError):
        return (
            f"the daemon at {path} is not accepting connections (its queue is full). "
            "It may be overloaded or hung: check its log, then retry."
        )
    if isinstance(exc, ConnectionRefusedError):
        return _describe_refused(path)
    return f"cannot connect to {path} ({exc.strerror or exc}). {START_HINT}"


def _describe_refused(path: Path) -> str:
    """Tell a stale socket apart from a path that is not a socket at all."""
    try:
        is_socket = stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        is_socket = True
    if not is_socket:
        return f"{path} is not a socket. Point --socket / NOVA_SOCKET at the daemon's socket."
    return (
        f"no daemon is listening on {path} (connection refused; the socket file is stale, "
        f"left by a daemon that has stopped). {START_HINT}"
    )


class Client:
    """A connection to one novad, making one request at a time.

    Args:
        socket_path: The daemon's Unix socket.
        timeout_s: Seconds to wait for the connect and for each message of a reply.
    """

    def __init__(self, socket_path: Path, timeout_s: float) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._unpacker: Any = None
        self._next_id = 1

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection, if one is open; the next call opens a new one."""
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._unpacker = None

    def call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        on_event: EventHandler | None = None,
        *,
        read_timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Send one request and return the ``result`` of its reply.

        Args:
            op: The operation name, such as ``"status"``.
            args: The operation's arguments.
            on_event: Called with the payload of each event streamed before the reply.
            read_timeout_s: Idle timeout for this call instead of ``timeout_s``;
                ``math.inf`` waits for as long as the daemon keeps the connection open.

        Raises:
            NotRunning: No daemon could be reached, or it stopped answering.
            DaemonError: The daemon answered with an error.
            BadReply: The daemon's answer could not be read.
        """
        req_id = self._next_id
        self._next_id += 1
        sock = self._connected()
        try:
            self._send(sock, op, request(req_id, op, args))
            sock.settimeout(self._read_bound(read_timeout_s))
            return self._read_reply(sock, op, req_id, on_event)
        except DaemonError:
            raise
        except BaseException:
            self.close()
            raise

    def _connected(self) -> socket.socket:
        """Return the open connection, opening it first if needed."""
        if self._sock is None:
            self._sock = self._connect()
            self._unpacker = make_unpacker(MAX_REPLY_BYTES)
        return self._sock

    def _connect(self) -> socket.socket:
        """Open a connection to the daemon, converting failures to ``NotRunning``."""
        if socket_path_too_long(self.socket_path):
            raise SocketPathTooLong(describe_long_socket_path(self.socket_path))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(str(self.socket_path))
        except OSError as exc:
            sock.close()
            message = describe_connect_failure(self.socket_path, exc, self.timeout_s)
            raise NotRunning(message) from exc
        logger.debug("connected to %s", self.socket_path)
        return sock

    def _read_bound(self, read_timeout_s: float | None) -> float | None:
        """Translate a per-call timeout into a socket timeout (``None`` blocks)."""
        bound = self.timeout_s if read_timeout_s is None else read_timeout_s
        return None if math.isinf(bound) else bound

    def _send(self, sock: socket.socket, op: str, message: dict[str, Any]) -> None:
        """Write one request, converting a broken connection to ``NotRunning``."""
        try:
            sock.sendall(pack(message))
        except TimeoutError as exc:
            raise NotRunning(self._silent(op, self.timeout_s)) from exc
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The daemon may have refused the connection with a reply (busy) and closed it.
            refusal = _refusal(sock)
            if refusal is not None:
                raise refusal from exc
            raise NotRunning(self._lost(op)) from exc
        except OSError as exc:
            raise NotRunning(self._lost(op)) from exc

    def _read_reply(
        self, sock: socket.socket, op: str, req_id: int, on_event: EventHandler | None
    ) -> dict[str, Any]:
        """Read messages until the reply to ``req_id``, passing its events on."""
        while True:
            message = self._next_message(sock, op)
            if not _is_for(message, req_id):
                logger.debug("dropping a message for another request: %r", message.get("id"))
                continue
            if "event" not in message:
                return self._result_of(message)
            if on_event is not None and isinstance(message["event"], dict):
                on_event(message["event"])

    def _next_message(self, sock: socket.socket, op: str) -> dict[str, Any]:
        """Return the next whole message, reading from the socket as needed."""
        while True:
            try:
                message = next(self._unpacker)
            except StopIteration:
                self._receive(sock, op)
                continue
            except (ValueError, msgpack.UnpackException) as exc:
                raise BadReply(f"the daemon at {self.socket_path} sent bad msgpack: {exc}") from exc
            if not isinstance(message, dict):
                raise BadReply(f"the daemon at {self.socket_path} sent a non-map message")
            return message

    def _receive(self, sock: socket.socket, op: str) -> None:
        """Feed the next chunk of bytes from the socket into the unpacker."""
        try:
            data = sock.recv(_RECV_BYTES)
        except TimeoutError as exc:
            raise NotRunning(self._silent(op, sock.gettimeout())) from exc
        except OSError as exc:
            raise NotRunning(self._lost(op)) from exc
        if not data:
            raise NotRunning(self._lost(op))
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull as exc:
            raise BadReply(
                f"a reply from the daemon at {self.socket_path} is over {MAX_REPLY_BYTES} bytes"
            ) from exc

    def _result_of(self, message: dict[str, Any]) -> dict[str, Any]:
        """Return a success reply's result, or raise the error an error reply carries."""
        if message.get("ok") is False:
            error = message.get("error")
            error = error if isinstance(error, dict) else {}
            code = str(error.get("code", "unknown"))
            raise DaemonError(code, str(error.get("message", "the daemon gave no reason")))
        result = message.get("result")
        if message.get("ok") is not True or not isinstance(result, dict):
            raise BadReply(f"the daemon at {self.socket_path} sent a reply without a result")
        return result

    def _silent(self, op: str, timeout_s: float | None) -> str:
        """Message for a daemon that accepted the connection but does not answer."""
        return (
            f"the daemon at {self.socket_path} is not answering (no reply to `{op}` within "
            f"{timeout_s or 0:g} s). It may be busy or hung: check its log, or raise --timeout."
        )

    def _lost(self, op: str) -> str:
        """Message for a connection the daemon closed before it answered."""
        return (
            f"the daemon at {self.socket_path} closed the connection before answering `{op}`; "
            "it may have stopped or crashed. Check its log, then retry."
        )


def _refusal(sock: socket.socket) -> DaemonError | None:
    """An error reply the daemon sent before closing, if one is waiting to be read."""
    unpacker = make_unpacker(MAX_REPLY_BYTES)
    try:
        sock.settimeout(1.0)
        unpacker.feed(sock.recv(_RECV_BYTES))
        message = next(unpacker, None)
    except (OSError, ValueError, msgpack.UnpackException):
        return None
    if isinstance(message, dict) and isinstance(message.get("error"), dict):
        error = message["error"]
        return DaemonError(str(error.get("code", "")), str(error.get("message", "")))
    return None


def _is_for(message: dict[str, Any], req_id: int) -> bool:
    """Whether ``message`` belongs to request ``req_id``.

    An error reply without an id answers a request the daemon could not read, which on a
    one-request-at-a-time connection can only be ours.
    """
    if message.get("id") is None:
        return message.get("ok") is False
    return bool(message.get("id") == req_id)
