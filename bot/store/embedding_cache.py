"""Embeddings cached by (model, text hash): a rebuild or a page view encodes only new texts."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import select

from bot.store.database import Database
from bot.store.models import EmbeddingCacheRow

# SQLite caps bound parameters per statement; keep IN (...) lists well below it.
_IN_BATCH = 500


def cached_embeddings(db: Database, model: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
    """The cached vectors of ``hashes`` under ``model`` (float32), by hash; misses are absent."""
    wanted = list(dict.fromkeys(hashes))
    found: dict[str, np.ndarray] = {}
    with db.session() as s:
        for start in range(0, len(wanted), _IN_BATCH):
            batch = wanted[start : start + _IN_BATCH]
            rows = s.execute(
                select(EmbeddingCacheRow.chunk_hash, EmbeddingCacheRow.vector).where(
                    EmbeddingCacheRow.model == model, EmbeddingCacheRow.chunk_hash.in_(batch)
                )
            )
            for chunk_hash, blob in rows:
                found[chunk_hash] = np.frombuffer(blob, dtype=np.float32)
    return found


def store_embeddings(db: Database, model: str, vectors: dict[str, np.ndarray]) -> None:
    """Cache ``vectors`` (by hash) under ``model``; an existing entry is overwritten."""
    if not vectors:
        return
    with db.session() as s:
        for chunk_hash, vec in vectors.items():
            arr = np.ascontiguousarray(vec, dtype=np.float32)
            s.merge(
                EmbeddingCacheRow(
                    model=model,
                    chunk_hash=chunk_hash,
                    dim=int(arr.shape[0]),
                    vector=arr.tobytes(),
                )
            )
