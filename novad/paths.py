"""Default locations of Nova's state directory and socket.

Stdlib only: the client imports this to find the daemon's socket. A system service
(running as root) uses ``/var/lib/nova`` and ``/run/nova``; a user follows XDG:
``$XDG_STATE_HOME/nova`` and ``$XDG_RUNTIME_DIR/nova``. Without ``XDG_RUNTIME_DIR`` the
socket goes to ``/tmp/nova-<uid>/``, a directory the daemon creates with mode 0700.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SOCKET_NAME = "novad.sock"
# AF_UNIX paths are limited to 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Return where the daemon keeps its store, manifest and metrics."""
    env = os.environ if env is None else env
    if os.geteuid() == 0 and "XDG_STATE_HOME" not in env:
        return Path("/var/lib/nova")
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "nova"


def default_runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    """Return the directory that holds the daemon's socket."""
    env = os.environ if env is None else env
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "nova"
    if os.geteuid() == 0:
        return Path("/run/nova")
    return Path(f"/tmp/nova-{os.geteuid()}")


def default_socket_path(env: Mapping[str, str] | None = None) -> Path:
    """Return the socket path used when neither a flag nor NOVA_SOCKET names one."""
    env = os.environ if env is None else env
    if env.get("NOVA_SOCKET"):
        return Path(env["NOVA_SOCKET"])
    return default_runtime_dir(env) / SOCKET_NAME


def socket_path_too_long(path: Path) -> bool:
    """Whether ``path`` is over the byte limit of a Unix socket's address."""
    return len(os.fsencode(str(path))) > MAX_SOCKET_PATH_BYTES
