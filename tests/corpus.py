"""Where the shared test corpus lives, for tests that run over real notes.

The corpus (``edge``, ``vault``, ``pages``) is not part of the repository. Tests find it
through ``NOVA_TEST_CORPUS``, else next to the repository at ``../shared/corpus``, and skip
with a message saying so when it is absent, so the suite still passes without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV_VAR = "NOVA_TEST_CORPUS"
DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"


def corpus_location() -> Path:
    """Return where the corpus is expected: ``$NOVA_TEST_CORPUS`` or the default."""
    configured = os.environ.get(ENV_VAR)
    return Path(configured) if configured else DEFAULT_CORPUS


def corpus_dir() -> Path | None:
    """Return the corpus directory if it exists, else None."""
    location = corpus_location()
    return location if location.is_dir() else None


def require_corpus() -> Path:
    """Return the corpus directory, or skip the calling test when it is absent."""
    found = corpus_dir()
    if found is None:
        pytest.skip(f"corpus not found at {corpus_location()}: set {ENV_VAR}")
    return found
