"""Pure ranking primitives: top-k selection, chunk→document aggregation, rank fusion.

All functions are deterministic (ties broken by row number) and tested against brute-force
oracles in ``tests/retrieval/test_retrieval_fusion.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of the ``k`` highest scores, best first; ties go to the lower row."""
    n = scores.shape[0]
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    k = min(k, n)
    # lexsort sorts by the last key first: score descending, then row ascending.
    if k < n:
        part = np.argpartition(-scores, k - 1)[:k]
        threshold = scores[part].min()
        part = np.flatnonzero(scores >= threshold)
    else:
        part = np.arange(n)
    order = np.lexsort((part, -scores[part]))
    return part[order][:k].astype(np.int64)


@dataclass(frozen=True)
class DocScore:
    doc: int
    score: float  # aggregated score used for ranking
    best_chunk: int
    best: float  # the best chunk's own score


def aggregate_chunks(
    chunk_rows: np.ndarray,
    chunk_scores: np.ndarray,
    chunk_doc: np.ndarray,
    *,
    second_weight: float = 0.0,
) -> list[DocScore]:
    """Documents ranked by their best chunk's score, plus ``second_weight`` × their second best.

    A page that matches in two places is a little more likely to be the answer than one that
    matches in one; the weight keeps that a tie-breaker rather than a length bonus.
    """
    best: dict[int, tuple[float, int]] = {}
    second: dict[int, float] = {}
    for row, score in zip(chunk_rows.tolist(), chunk_scores.tolist(), strict=True):
        doc = int(chunk_doc[row])
        if doc not in best:
            best[doc] = (score, row)
        elif doc not in second:
            second[doc] = score
        # further chunks are ignored: rows arrive best first
    ranked = [
        DocScore(doc, s + second_weight * second.get(doc, 0.0), row, s)
        for doc, (s, row) in best.items()
    ]
    ranked.sort(key=lambda d: (-d.score, d.doc))
    return ranked


def weighted_rrf(
    rankings: Sequence[tuple[Sequence[int], float]], *, k: float = 60.0
) -> dict[int, float]:
    """Weighted reciprocal-rank fusion: ``sum(weight / (k + rank))``, ranks from 1."""
    fused: dict[int, float] = {}
    for items, weight in rankings:
        if weight == 0.0:
            continue
        for rank, item in enumerate(items, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def order_by_score(scores: Mapping[int, float]) -> list[int]:
    return sorted(scores, key=lambda item: (-scores[item], item))
