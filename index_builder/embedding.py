"""Embed chunks through the (model, text hash) cache: unchanged text is never re-embedded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bot.corpus.documents import Chunk
from bot.retrieval.encoder import Encoder
from bot.store.database import Database
from bot.store.embedding_cache import cached_embeddings, store_embeddings

# Texts handed to the model per call: big enough that its length-sorting keeps padding low,
# small enough for a progress bar that moves.
_GROUP = 1024


@dataclass(frozen=True)
class EmbedStats:
    embedded: int
    cached: int


def embed_chunks(
    chunks: Sequence[Chunk],
    *,
    db: Database,
    model_name: str,
    encoder_factory: Callable[[], Encoder],
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, EmbedStats]:
    """Vectors for ``chunks`` (row i ↔ chunk i), computing only what the cache lacks.

    ``encoder_factory`` is called only when something must be embedded, so a rebuild with
    nothing changed never pays for loading the model.
    """
    unique = list(dict.fromkeys(c.hash for c in chunks))
    vectors = cached_embeddings(db, model_name, unique)
    cached = len(vectors)
    missing = [h for h in unique if h not in vectors]
    if on_progress and cached:
        on_progress(sum(1 for c in chunks if c.hash in vectors))
    if missing:
        encoder = encoder_factory()
        text_of = {c.hash: c.text for c in chunks}
        # Sorting by length groups similar sizes into a batch: less padding, faster encode.
        missing.sort(key=lambda h: len(text_of[h]))
        for start in range(0, len(missing), _GROUP):
            group = missing[start : start + _GROUP]
            out = encoder.encode([text_of[h] for h in group])
            fresh = {h: out[i] for i, h in enumerate(group)}
            store_embeddings(db, model_name, fresh)
            vectors.update(fresh)
            if on_progress:
                on_progress(len(group))
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32), EmbedStats(0, 0)
    matrix = np.vstack([vectors[c.hash] for c in chunks]).astype(np.float32, copy=False)
    return matrix, EmbedStats(embedded=len(missing), cached=cached)
