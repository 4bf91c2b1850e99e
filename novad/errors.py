"""Nova's exception tree.

Every error Nova raises on purpose is a ``NovaError``; third-party exceptions are
converted where they enter (``raise ... from exc``) so callers handle one family::

    NovaError
    ├── ConfigError        a setting is missing, malformed or contradictory
    ├── InstanceError      another daemon owns the state dir or the socket path
    ├── NoteError          one note cannot be indexed (carries the reason); never fatal
    ├── EmbedderError      the embedding model cannot be loaded or run
    ├── StoreError         ChromaDB refused an operation or cannot be opened
    └── ProtocolError      a message on the socket is malformed (carries a stable code)

Each message names the thing that failed (a path, a setting, a socket) and the way out.
"""

from __future__ import annotations


class NovaError(Exception):
    """Root of every error Nova raises on purpose."""


class ConfigError(NovaError):
    """A setting is missing, malformed or contradictory."""


class InstanceError(NovaError):
    """Another daemon already owns the state directory or the socket path."""


class NoteError(NovaError):
    """One note cannot be indexed; ``reason`` is recorded in the manifest and shown in stats."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EmbedderError(NovaError):
    """The embedding model cannot be loaded or run."""


class StoreError(NovaError):
    """ChromaDB refused an operation or the store cannot be opened."""


class ProtocolError(NovaError):
    """A message on the socket is malformed; ``code`` is the stable slug sent back."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
