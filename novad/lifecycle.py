"""Owning the state directory and the socket path for the daemon's lifetime.

One daemon per state directory: an exclusive ``flock`` on ``<state>/novad.lock`` is held
while the daemon lives, so a second daemon on the same state directory exits before it
ever opens ChromaDB (TRAPS C01); the kernel drops the lock when the process dies, so a
crash never leaves it stuck. The file records the holder's pid for the error message.

The socket path gets the same treatment through ``<socket>.lock``. Only with that lock
held is an existing socket file judged: if something answers on it, another daemon is
serving and we refuse; if nothing answers it is a crash's leftover and is replaced; if it
is not a socket at all it is left alone and we refuse (TRAPS C22). Two daemons started
at once therefore cannot both judge the socket stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import stat
from pathlib import Path

from novad.errors import InstanceError

log = logging.getLogger(__name__)

# novad's exit codes (the README lists them).
EXIT_OK = 0
EXIT_FAILED = 1  # failed while running
EXIT_CONFIG = 2  # a bad setting or flag
EXIT_NOT_READY = 3  # never became ready: another owner, a non-socket file, no model or store


class PathLock:
    """An exclusive, non-blocking ``flock`` on a file, holding the owner's pid."""

    def __init__(self, path: Path, what: str) -> None:
        """Remember the lock file; ``what`` names the guarded thing in messages."""
        self.path = path
        self._what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise InstanceError naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InstanceError(
                f"another novad (pid {holder}) is already using {self._what}; "
                "stop it first, or give this one its own --state-dir and --socket"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; its presence means nothing)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def prepare_dir(path: Path, mode: int) -> None:
    """Create a directory (and parents) if missing; refuse one we cannot write to."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
    except OSError as exc:
        raise InstanceError(f"cannot create directory {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise InstanceError(f"directory {path} is not writable by this user; fix its permissions")


def bind_socket(path: Path, *, mode: int = 0o660) -> socket.socket:
    """Bind and listen on ``path``, replacing only a socket nobody answers on.

    The caller must hold the socket path's lock.
    """
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, mode)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise InstanceError(f"cannot listen on socket {path}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


def _clear_stale(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InstanceError(
            f"{path} exists and is not a socket; refusing to replace it. "
            "Move it away or choose another --socket"
        )
    if _answers(path):
        raise InstanceError(
            f"a daemon is already listening on {path}; stop it or choose another --socket"
        )
    log.info("removing stale socket %s left by a daemon that is gone", path)
    path.unlink()


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def remove_socket(path: Path) -> None:
    """Remove our socket file on the way out."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
