"""Second stage: re-order the fused first-stage candidates with a learned linear ranker.

The first stage (``search.first_stage``) gives every candidate document its dense, lexical
and API-symbol evidence and a rank-fusion score. Rank fusion throws away how *much* better
one candidate is than the next, and it knows nothing of titles or of which chunk of a page
matched. The reranker scores each of the top candidates from a handful of features (below)
with weights learnt by ``index_builder.reranker_training`` from queries the corpus itself
provides (never from the eval questions), and orders them by that score.

It is a linear model over standardised features, so it costs a few microseconds per
candidate: the only real work is the exact cosine of the query with each candidate's chunk
vectors, which are in memory already.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.errors import IndexCorruptError

log = logging.getLogger(__name__)

RERANKER_FILE = "reranker.json"

#: Feature names, in the column order of ``candidate_features``.
FEATURES: tuple[str, ...] = (
    "cos_best",  # best chunk cosine with the query (exact, over all the document's chunks)
    "cos_second",  # second-best chunk cosine (0 for one-chunk documents)
    "cos_first",  # cosine with the document's first chunk: its summary / intro
    "lex_best",  # best chunk BM25 / the query's best BM25 over all chunks
    "dense_rr",  # 1 / rank in the dense list (0 when not in it)
    "lex_rr",  # 1 / rank in the lexical list
    "symbol",  # strength of an API-symbol mention of the document (0..1)
    "title_overlap",  # share of the title's terms that the query contains
    "fused",  # the first stage's fusion score × rrf_k (about 0..3)
    "kind_api",  # an API symbol documented from source
    "kind_stub",  # an API symbol known only from the site map (title + breadcrumb)
    "kind_guide",
    "kind_example",
    "kind_page",  # other keras.io pages: getting_started, API section intros
    "log_chunks",  # log(1 + the document's chunk count): long pages match more by chance
    "cos_mean",  # mean cosine over all the document's chunks: is the page about this overall
)


@dataclass(frozen=True)
class CandidateEvidence:
    """What the first stage knows about one candidate document."""

    doc: int
    fused: float
    dense_rank: int | None
    lexical_rank: int | None
    lexical_best: float | None
    symbol: float


def kind_features(doc_id: str, kind: str, source: str) -> tuple[float, float, float, float, float]:
    if kind == "api":
        stub = source == "site-map"
        return (0.0 if stub else 1.0, 1.0 if stub else 0.0, 0.0, 0.0, 0.0)
    if doc_id.startswith("guides/"):
        return (0.0, 0.0, 1.0, 0.0, 0.0)
    if doc_id.startswith("examples/"):
        return (0.0, 0.0, 0.0, 1.0, 0.0)
    return (0.0, 0.0, 0.0, 0.0, 1.0)


def title_overlap(title_terms: frozenset[str], query_terms: frozenset[str]) -> float:
    return len(title_terms & query_terms) / len(title_terms) if title_terms else 0.0


def candidate_features(
    candidates: Sequence[CandidateEvidence],
    *,
    chunk_cosines: Sequence[np.ndarray],
    first_cosines: Sequence[float],
    lexical_max: float,
    title_terms: Sequence[frozenset[str]],
    query_terms: frozenset[str],
    kinds: Sequence[tuple[float, float, float, float, float]],
    chunk_counts: Sequence[int],
    rrf_k: float,
) -> np.ndarray:
    """The feature matrix ``[len(candidates), len(FEATURES)]``; pure, given the evidence.

    ``chunk_cosines[i]`` holds the cosines of the query with every chunk of candidate i.
    """
    out = np.zeros((len(candidates), len(FEATURES)), dtype=np.float64)
    for i, c in enumerate(candidates):
        cos = np.sort(np.asarray(chunk_cosines[i], dtype=np.float64))[::-1]
        out[i, 0] = cos[0] if cos.size else 0.0
        out[i, 1] = cos[1] if cos.size > 1 else 0.0
        out[i, 2] = first_cosines[i]
        out[i, 3] = (c.lexical_best or 0.0) / lexical_max if lexical_max > 0 else 0.0
        out[i, 4] = 1.0 / c.dense_rank if c.dense_rank else 0.0
        out[i, 5] = 1.0 / c.lexical_rank if c.lexical_rank else 0.0
        out[i, 6] = c.symbol
        out[i, 7] = title_overlap(title_terms[i], query_terms)
        out[i, 8] = c.fused * rrf_k
        out[i, 9:14] = kinds[i]
        out[i, 14] = math.log1p(chunk_counts[i])
        out[i, 15] = float(cos.mean()) if cos.size else 0.0
    return out


@dataclass(frozen=True)
class Reranker:
    """A linear scorer over standardised features: ``((x - mean) / scale) · weights``."""

    weights: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    features: tuple[str, ...] = FEATURES
    info: tuple[tuple[str, Any], ...] = ()  # how it was trained: counts, seed, validation

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(((x - self.mean) / self.scale) @ self.weights, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "weights": [round(float(w), 6) for w in self.weights],
            "mean": [round(float(m), 6) for m in self.mean],
            "scale": [round(float(s), 6) for s in self.scale],
            "info": dict(self.info),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reranker:
        features = tuple(str(f) for f in data["features"])
        if features != FEATURES:
            raise ValueError(f"features {features} are not this version's {FEATURES}")
        arrays = [np.asarray(data[key], dtype=np.float64) for key in ("weights", "mean", "scale")]
        if any(a.shape != (len(FEATURES),) for a in arrays) or not np.all(arrays[2] > 0):
            raise ValueError("weights, mean and scale must be one positive-scale row each")
        info = tuple(sorted((str(k), v) for k, v in (data.get("info") or {}).items()))
        return cls(arrays[0], arrays[1], arrays[2], features, info)

    def save(self, folder: Path) -> Path:
        """Write ``reranker.json`` into ``folder`` durably (temp file, fsync, rename)."""
        path = folder / RERANKER_FILE
        tmp = folder / f".{RERANKER_FILE}.tmp"
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(self.to_json(), indent=1) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path


def load_reranker(folder: Path) -> Reranker | None:
    """The version folder's reranker, or None when the build trained none.

    A reranker over another feature set (an index built by another version) is not used:
    the first stage alone still ranks well, so that is a warning, not a refusal to serve.
    """
    path = folder / RERANKER_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"cannot read {path}: {exc}") from exc
    try:
        return Reranker.from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("not using the reranker in %s (%s): rebuild the index to retrain it", path, exc)
        return None


def fit_pairwise(
    groups: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    l2: float = 1.0,
    max_pairs_per_group: int = 40,
    seed: int = 0,
) -> Reranker:
    """Learn weights so that relevant candidates outscore the others of the same query.

    ``groups``: one (features, relevant mask) per training query. Pairwise logistic
    regression (RankNet with a linear scorer) on standardised feature differences; up to
    ``max_pairs_per_group`` (relevant, other) pairs per query, sampled with ``seed``, so a
    query with many candidates does not outweigh the rest. Deterministic for a seed.
    """
    from sklearn.linear_model import LogisticRegression

    usable = [(x, y) for x, y in groups if y.any() and (~y).any()]
    if not usable:
        raise ValueError("no training query has both a relevant and an irrelevant candidate")
    allx = np.concatenate([x for x, _ in usable])
    mean = allx.mean(axis=0)
    scale = allx.std(axis=0)
    scale[scale < 1e-9] = 1.0
    rng = np.random.default_rng(seed)
    diffs: list[np.ndarray] = []
    for x, y in usable:
        z = (x - mean) / scale
        pairs = [(i, j) for i in np.flatnonzero(y) for j in np.flatnonzero(~y)]
        if len(pairs) > max_pairs_per_group:
            pick = rng.choice(len(pairs), size=max_pairs_per_group, replace=False)
            pairs = [pairs[p] for p in sorted(pick.tolist())]
        diffs.extend(z[i] - z[j] for i, j in pairs)
    d = np.asarray(diffs)
    # Both orientations, so the problem is symmetric and needs no intercept.
    features = np.concatenate([d, -d])
    labels = np.concatenate([np.ones(len(d)), np.zeros(len(d))])
    model = LogisticRegression(C=1.0 / l2, fit_intercept=False, max_iter=2000)
    model.fit(features, labels)
    return Reranker(
        weights=np.asarray(model.coef_[0], dtype=np.float64),
        mean=mean,
        scale=scale,
        info=(("queries", len(usable)), ("pairs", len(d)), ("seed", seed), ("l2", l2)),
    )
