"""The asyncio Unix-socket server: framing, validation and dispatch of requests.

Each connection reads bytes into a capped streaming unpacker (``novad.protocol``) and
answers every complete request in turn. A request that is not valid msgpack, or breaks a
cap, gets one error reply and the connection is closed, since the stream can no longer be
trusted; a well-formed but wrong request (unknown op, bad args) gets an error reply and the
connection stays open. A handler's unexpected exception becomes an ``internal`` error
reply and one log line; the daemon and its other clients carry on (invariant 5).

Handlers are coroutines ``(request, emit) -> result``; ``emit`` sends a streamed event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgpack

from novad import protocol
from novad.errors import NovaError, ProtocolError

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[protocol.Request, Emit], Awaitable[dict[str, Any]]]

_READ_SIZE = 64 * 1024
# A connection that sends nothing for this long gives its slot back.
_IDLE_TIMEOUT_S = 60.0
# A request must arrive whole within this long of its first byte (no slow drip-feeding).
_REQUEST_DEADLINE_S = 10.0
_SLOW_REQUEST = f"a request must arrive whole within {_REQUEST_DEADLINE_S:.0f} s of its first byte"


class _Closed(Exception):
    """The peer went away or the stream is unusable; drop the connection."""


class Server:
    """Serves the protocol on a listening Unix socket."""

    def __init__(
        self, handlers: Mapping[str, Handler], *, max_request_bytes: int, max_connections: int
    ) -> None:
        """Keep the op table and the limits; ``start`` begins serving."""
        self._handlers = handlers
        self._max_request_bytes = max_request_bytes
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, sock: Any) -> None:
        """Serve on an already bound and listening socket."""
        self._server = await asyncio.start_unix_server(self._accept, sock=sock)

    def stop_accepting(self) -> None:
        """Refuse new connections; open ones carry on until ``close``."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Stop accepting, then end open connections (their handlers are cancelled)."""
        self.stop_accepting()
        await asyncio.sleep(0.2)  # let replies that were just made ready be written
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=2.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots.locked():
            busy = f"too many connections (max_connections={self._max_connections}); retry"
            await _send(writer, protocol.error_reply(None, protocol.BUSY, busy))
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            async with self._slots:
                await self._serve(reader, writer)
        except (_Closed, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Our own shutdown: the connection ends here, quietly.
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unpacker = protocol.make_unpacker(self._max_request_bytes)
        loop = asyncio.get_running_loop()
        deadline: float | None = None  # set while a request is only partly received
        while True:
            wait_s = _IDLE_TIMEOUT_S if deadline is None else deadline - loop.time()
            try:
                data = await asyncio.wait_for(reader.read(_READ_SIZE), max(wait_s, 0.0))
            except TimeoutError:
                if deadline is not None:
                    await self._refuse(writer, protocol.TIMEOUT, _SLOW_REQUEST)
                return
            if not data:
                return
            try:
                unpacker.feed(data)
            except msgpack.BufferFull:
                await self._refuse(
                    writer,
                    protocol.TOO_LARGE,
                    f"request over max_request_bytes={self._max_request_bytes}",
                )
            messages = _messages(unpacker)
            if messages:
                deadline = None
            elif deadline is None:
                deadline = loop.time() + _REQUEST_DEADLINE_S
            for message in messages:
                if isinstance(message, ProtocolError):
                    await self._refuse(writer, message.code, message.message)
                await self._dispatch(message, writer)

    async def _refuse(self, writer: asyncio.StreamWriter, code: str, message: str) -> None:
        log.warning("closing a client connection: %s", message)
        await _send(writer, protocol.error_reply(None, code, message))
        raise _Closed()

    async def _dispatch(self, message: object, writer: asyncio.StreamWriter) -> None:
        req_id = protocol.request_id_of(message)
        try:
            req = protocol.parse_request(message)
            handler = self._handlers.get(req.op)
            if handler is None:
                known = ", ".join(sorted(self._handlers))
                raise ProtocolError(protocol.UNKNOWN_OP, f"unknown op {req.op!r}; known: {known}")

            async def emit(payload: dict[str, Any]) -> None:
                await _send(writer, protocol.event(req.id, payload))

            reply = protocol.ok_reply(req.id, await handler(req, emit))
        except ProtocolError as exc:
            reply = protocol.error_reply(req_id, exc.code, exc.message)
        except NovaError as exc:
            reply = protocol.error_reply(req_id, protocol.INTERNAL, str(exc))
        except asyncio.CancelledError:
            await _say_goodbye(writer, req_id)
            raise
        except (_Closed, ConnectionError):
            raise
        except Exception as exc:
            log.exception("request %r failed", req_id)
            reply = protocol.error_reply(req_id, protocol.INTERNAL, f"internal error: {exc}")
        await _send(writer, reply)


def _messages(unpacker: msgpack.Unpacker) -> list[object]:
    """Take every complete message out of the unpacker; a decoding error ends the list."""
    found: list[object] = []
    try:
        for message in unpacker:
            found.append(message)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        detail = str(exc) or type(exc).__name__
        found.append(ProtocolError(protocol.BAD_MSGPACK, f"malformed msgpack: {detail}"))
    return found


async def _say_goodbye(writer: asyncio.StreamWriter, req_id: int | None) -> None:
    """Tell a client whose request is cut short by shutdown why, if it is still there."""
    message = "the daemon is shutting down; the request was not completed"
    with contextlib.suppress(Exception):
        writer.write(protocol.pack(protocol.error_reply(req_id, protocol.SHUTTING_DOWN, message)))
        await asyncio.wait_for(writer.drain(), 1.0)


async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    if writer.is_closing():
        raise _Closed()
    writer.write(protocol.pack(message))
    try:
        await asyncio.wait_for(writer.drain(), 30.0)
    except (TimeoutError, ConnectionError) as exc:
        raise _Closed() from exc
