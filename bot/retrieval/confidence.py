"""How sure the bot is that its top page answers the question, and how that was fitted.

A logistic model over a few signals of the ranked hits. With a reranker (``rerank.py``) the
signals are the top page's reranker score, its lead over the runner-up, its best-chunk
cosine and how explicitly the question named it; without one (an index too small to learn a
reranker from) the first stage's signals stand in.

The shipped weights come from ``supportbot eval FILE --fit-confidence``, which fits them on a
labelled question file and reports *cross-validated* numbers only: every question is scored
by a model fitted on the other folds, never on itself. The weights are data (a small JSON
file an operator can refit on their own room's triage and point
``SUPPORTBOT_CONFIDENCE_MODEL`` at).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bot.retrieval.search import Hit

#: Signals, in column order of ``confidence_features``.
SIGNALS: tuple[str, ...] = (
    "top_score",  # the reranker's score of the top page (first stage: its fused score × 60)
    "lead",  # top score − runner-up score
    "cosine",  # best chunk cosine of the top page
    "symbol",  # API-symbol mention strength of the top page
    "agreement",  # dense and lexical search both put the top page in their top 3
)


def confidence_features(hits: Sequence[Hit]) -> np.ndarray:
    """The signals of a ranked hit list (an empty list gives zeros)."""
    if not hits:
        return np.zeros(len(SIGNALS))
    top = hits[0]
    reranked = top.rerank is not None

    def score(h: Hit) -> float:
        return h.rerank if (reranked and h.rerank is not None) else h.score * 60.0

    runner = next((h for h in hits[1:] if (h.rerank is not None) == reranked), None)
    lead = score(top) - score(runner) if runner is not None else 1.0
    agree = (top.dense_rank or 99) <= 3 and (top.lexical_rank or 99) <= 3
    return np.array(
        [
            score(top),
            lead,
            top.dense if top.dense is not None else 0.0,
            top.symbol.strength if top.symbol else 0.0,
            1.0 if agree else 0.0,
        ]
    )


def _sigmoid(z: float) -> float:
    if z < -60:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class ConfidenceModel:
    bias: float
    weights: tuple[float, ...]
    reranked: bool = True  # fitted on reranked hits (else on first-stage ones)
    info: tuple[tuple[str, Any], ...] = ()

    def __call__(self, hits: Sequence[Hit]) -> float:
        if not hits:
            return 0.0
        return self.probability(confidence_features(hits))

    def probability(self, x: np.ndarray) -> float:
        return _sigmoid(self.bias + float(np.dot(self.weights, x)))

    def to_json(self) -> dict[str, Any]:
        return {
            "signals": list(SIGNALS),
            "bias": round(self.bias, 5),
            "weights": [round(w, 5) for w in self.weights],
            "reranked": self.reranked,
            "info": dict(self.info),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConfidenceModel:
        if tuple(data.get("signals", ())) != SIGNALS:
            raise ValueError(f"signals must be {list(SIGNALS)}")
        weights = tuple(float(w) for w in data["weights"])
        if len(weights) != len(SIGNALS):
            raise ValueError("one weight per signal")
        info = tuple(sorted((str(k), v) for k, v in (data.get("info") or {}).items()))
        return cls(float(data["bias"]), weights, bool(data.get("reranked", True)), info)

    @classmethod
    def load(cls, path: Path) -> ConfidenceModel:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


SHIPPED_MODEL = Path(__file__).with_name("confidence_model.json")


@lru_cache(maxsize=1)
def default_confidence_model() -> ConfidenceModel:
    return ConfidenceModel.load(SHIPPED_MODEL)


def fit_confidence(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0) -> ConfidenceModel:
    """Logistic regression of "the top page is right" on the signals (L2-regularised)."""
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:
        raise ValueError("fitting a confidence needs both right and wrong top pages")
    model = LogisticRegression(C=1.0 / l2, max_iter=5000)
    model.fit(x, y.astype(int))
    return ConfidenceModel(
        bias=float(model.intercept_[0]),
        weights=tuple(float(w) for w in model.coef_[0]),
        info=(("n", len(y)), ("positives", int(y.sum())), ("l2", l2)),
    )


def fold_assignment(y: np.ndarray, *, folds: int, seed: int) -> np.ndarray:
    """Each row's fold: stratified by label, shuffled with ``seed`` (reproducible)."""
    labels = y.astype(bool)
    folds = max(2, min(folds, int(labels.sum()), int((~labels).sum())))
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=int)
    for label in (True, False):
        rows = np.flatnonzero(labels == label)
        rng.shuffle(rows)
        fold_of[rows] = np.arange(len(rows)) % folds
    return fold_of


def cross_validated(
    x: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0, l2: float = 1.0
) -> np.ndarray:
    """Out-of-fold probabilities: each row scored by a model that never saw it.

    Folds are stratified by label and shuffled with ``seed``, so the split is reproducible.
    """
    fold_of = fold_assignment(y, folds=folds, seed=seed)
    out = np.zeros(len(y))
    for f in range(int(fold_of.max()) + 1):
        test = fold_of == f
        model = fit_confidence(x[~test], y[~test], l2=l2)
        out[test] = [model.probability(row) for row in x[test]]
    return out
