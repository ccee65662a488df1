"""How sure the bot is that its top page answers the question, and how that was fitted.

A logistic model over a few signals of the ranked hits. With a reranker (``rerank.py``) the
signals are the top page's reranker score, its lead over the runner-up, its best-chunk
cosine and how explicitly the question named it; without one (an index too small to learn a
reranker from) the first stage's signals stand in.

Where the model comes from, first match wins:

1. ``SUPPORTBOT_CONFIDENCE_MODEL``: an operator's file (``supportbot eval FILE
   --fit-confidence --save-confidence``, fitted on their own labelled questions);
2. the index version's ``confidence.json``, learnt at ``index build`` from questions the
   corpus itself gives, each scored by a reranker that never saw it
   (``index_builder.confidence_training``), so it always matches the index's reranker;
3. the shipped ``confidence_model.json`` (fitted on the dev questions with
   ``--fit-confidence``), for an index built before (2) existed or too small to learn from.

A model names the signals it was fitted on (any of ``ALL_SIGNALS``), so files with fewer
signals keep loading.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from bot.retrieval.symbols import SymbolMatch


class Hit(Protocol):
    """What the signals read of a ranked hit (``search.Hit``; a protocol, so this module does
    not import ``search``, which imports it)."""

    @property
    def title(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def dense(self) -> float | None: ...
    @property
    def symbol(self) -> SymbolMatch | None: ...
    @property
    def dense_rank(self) -> int | None: ...
    @property
    def lexical_rank(self) -> int | None: ...
    @property
    def rerank(self) -> float | None: ...
    @property
    def excerpt(self) -> str: ...


log = logging.getLogger(__name__)

CONFIDENCE_FILE = "confidence.json"

#: The signals of the shipped model, in its column order.
SIGNALS: tuple[str, ...] = (
    "top_score",  # the reranker's score of the top page (first stage: its fused score × 60)
    "lead",  # top score − runner-up score
    "cosine",  # best chunk cosine of the top page
    "symbol",  # API-symbol mention strength of the top page
    "agreement",  # dense and lexical search both put the top page in their top 3
)

SOFTMAX_DEPTH = 5  # hits the top page's softmax share is taken over
CONSENSUS_DEPTH = 3  # the top page and the two runners-up


def _score(h: Hit, reranked: bool) -> float:
    return h.rerank if (reranked and h.rerank is not None) else h.score * 60.0


def _comparable(hits: Sequence[Hit]) -> list[float]:
    """Scores of the hits ranked like the top one (reranked or not), best first."""
    reranked = hits[0].rerank is not None
    return [_score(h, reranked) for h in hits if (h.rerank is not None) == reranked]


def _lead(hits: Sequence[Hit], depth: int) -> float:
    scores = _comparable(hits)
    return scores[0] - scores[depth] if len(scores) > depth else 1.0


def _softmax_top(hits: Sequence[Hit], _terms: frozenset[str]) -> float:
    """The top page's share of the softmax over the first SOFTMAX_DEPTH scores: the lead in
    probability space, which also counts how many pages crowd just behind the top one."""
    scores = np.asarray(_comparable(hits)[:SOFTMAX_DEPTH], dtype=np.float64)
    e = np.exp(scores - scores.max())
    return float(e[0] / e.sum())


def _title_overlap(hits: Sequence[Hit], terms: frozenset[str]) -> float:
    from bot.retrieval.text import lexical_tokens

    title = frozenset(lexical_tokens(hits[0].title))
    return len(title & terms) / len(title) if title else 0.0


def _agreement(hits: Sequence[Hit], _terms: frozenset[str]) -> float:
    top = hits[0]
    return 1.0 if (top.dense_rank or 99) <= 3 and (top.lexical_rank or 99) <= 3 else 0.0


_NAME_MIN = 4  # shorter API names ("Add", "Dot") match too much prose to count as a mention


def _api_name(h: Hit) -> str | None:
    """The short name an API page is mentioned by in prose (``EarlyStopping``), else None."""
    if h.kind != "api":
        return None
    name = h.title.rsplit(".", 1)[-1].strip("`() ")
    return name if len(name) >= _NAME_MIN and name.isidentifier() else None


def _mentions(text: str, name: str | None) -> bool:
    return bool(name) and re.search(rf"(?<![\w.]){re.escape(name or '')}(?!\w)", text) is not None


def name_each_other(a: Hit, b: Hit) -> bool:
    """Whether one hit's matching text names the other, an API page, by its short name (the
    FAQ entry that says "use an `EarlyStopping` callback" and the EarlyStopping page)."""
    return _mentions(a.excerpt, _api_name(b)) or _mentions(b.excerpt, _api_name(a))


def _consensus(hits: Sequence[Hit], _terms: frozenset[str]) -> float:
    """1 when the top page and a close runner-up point at each other (``name_each_other``).
    Two right pages then split the lead between them, which is not doubt about the answer."""
    top, runners = hits[0], hits[1:CONSENSUS_DEPTH]
    return 1.0 if any(name_each_other(top, h) for h in runners) else 0.0


def _reciprocal(rank: int | None) -> float:
    return 1.0 / rank if rank else 0.0


_SignalFn = Callable[[Sequence[Hit], frozenset[str]], float]

#: Every signal a model may use: name -> f(hits, the query's lexical terms). Hits non-empty.
SIGNAL_FUNCTIONS: dict[str, _SignalFn] = {
    "top_score": lambda hits, _t: _comparable(hits)[0],
    "lead": lambda hits, _t: _lead(hits, 1),
    "cosine": lambda hits, _t: hits[0].dense if hits[0].dense is not None else 0.0,
    "symbol": lambda hits, _t: hits[0].symbol.strength if hits[0].symbol else 0.0,
    "agreement": _agreement,
    "lead3": lambda hits, _t: _lead(hits, 2),  # top − third: is the top alone in front
    "softmax_top": _softmax_top,
    "title_overlap": _title_overlap,  # share of the top page's title terms in the question
    "dense_rr": lambda hits, _t: _reciprocal(hits[0].dense_rank),
    "lexical_rr": lambda hits, _t: _reciprocal(hits[0].lexical_rank),
    "kind_api": lambda hits, _t: 1.0 if hits[0].kind == "api" else 0.0,
    "consensus": _consensus,  # the top page and a runner-up name each other
}
ALL_SIGNALS: tuple[str, ...] = tuple(SIGNAL_FUNCTIONS)


def confidence_features(
    hits: Sequence[Hit],
    signals: Sequence[str] = SIGNALS,
    query_terms: frozenset[str] = frozenset(),
) -> np.ndarray:
    """The ``signals`` of a ranked hit list, in that order (an empty list gives zeros)."""
    if not hits:
        return np.zeros(len(signals))
    return np.array([SIGNAL_FUNCTIONS[s](hits, query_terms) for s in signals], dtype=np.float64)


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
    signals: tuple[str, ...] = SIGNALS

    def __call__(self, hits: Sequence[Hit], query_terms: frozenset[str] = frozenset()) -> float:
        if not hits:
            return 0.0
        return self.probability(confidence_features(hits, self.signals, query_terms))

    def probability(self, x: np.ndarray) -> float:
        return _sigmoid(self.bias + float(np.dot(self.weights, x)))

    def to_json(self) -> dict[str, Any]:
        return {
            "signals": list(self.signals),
            "bias": round(self.bias, 5),
            "weights": [round(w, 5) for w in self.weights],
            "reranked": self.reranked,
            "info": dict(self.info),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConfidenceModel:
        signals = tuple(str(s) for s in data.get("signals", ()))
        unknown = [s for s in signals if s not in SIGNAL_FUNCTIONS]
        if not signals or unknown or len(set(signals)) != len(signals):
            raise ValueError(f"signals must be distinct names from {list(ALL_SIGNALS)}")
        weights = tuple(float(w) for w in data["weights"])
        if len(weights) != len(signals):
            raise ValueError("one weight per signal")
        info = tuple(sorted((str(k), v) for k, v in (data.get("info") or {}).items()))
        return cls(float(data["bias"]), weights, bool(data.get("reranked", True)), info, signals)

    @classmethod
    def load(cls, path: Path) -> ConfidenceModel:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def save(self, folder: Path) -> Path:
        """Write ``confidence.json`` into ``folder`` durably (temp file, fsync, rename)."""
        path = folder / CONFIDENCE_FILE
        tmp = folder / f".{CONFIDENCE_FILE}.tmp"
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(self.to_json(), indent=1) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path


SHIPPED_MODEL = Path(__file__).with_name("confidence_model.json")


@lru_cache(maxsize=1)
def default_confidence_model() -> ConfidenceModel:
    return ConfidenceModel.load(SHIPPED_MODEL)


def load_index_confidence(folder: Path) -> ConfidenceModel | None:
    """The index version's learnt confidence, or None (then the shipped model is used).

    An unreadable or foreign file is a warning, not a refusal to serve: the shipped model
    still gives a usable confidence.
    """
    path = folder / CONFIDENCE_FILE
    if not path.is_file():
        return None
    try:
        return ConfidenceModel.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("not using the confidence in %s (%s): using the shipped one", path, exc)
        return None


def fit_confidence(
    x: np.ndarray,
    y: np.ndarray,
    *,
    l2: float = 1.0,
    signals: Sequence[str] = SIGNALS,
    weight: np.ndarray | None = None,
    standardise: bool = False,
    monotone: bool = False,
) -> ConfidenceModel:
    """Logistic regression of "the top page is right" on the signals (L2-regularised).

    ``standardise``: fit on standardised columns (so one L2 strength suits signals of any
    scale) and fold the scaling back into the weights, so the model applies to raw signals
    (the shipped model was fitted without). ``monotone``: no weight below zero, for signals
    that by construction can only speak for the top page (a higher score, a wider lead, a
    closer cosine); a negative weight there comes from signals standing in for each other on
    the training questions, not from anything that carries over. Deterministic: lbfgs has no
    randomness.
    """
    if len(set(y.tolist())) < 2:
        raise ValueError("fitting a confidence needs both right and wrong top pages")
    if x.shape[1] != len(signals):
        raise ValueError("one column per signal")
    mean, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    if standardise:
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale < 1e-9] = 1.0
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)
    fit = _fit_monotone if monotone else _fit_logistic
    raw, intercept = fit((x - mean) / scale, y.astype(np.float64), w, l2)
    coef = raw / scale
    bias = intercept - float(np.dot(coef, mean))
    return ConfidenceModel(
        bias=bias,
        weights=tuple(float(w) for w in coef),
        info=(("l2", l2), ("n", len(y)), ("positives", int(y.sum()))),
        signals=tuple(signals),
    )


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float
) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0 / l2, max_iter=5000)
    model.fit(x, y.astype(int), sample_weight=w)
    return np.asarray(model.coef_[0], dtype=np.float64), float(model.intercept_[0])


def _fit_monotone(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float
) -> tuple[np.ndarray, float]:
    """The same objective as ``_fit_logistic`` (weighted log-loss + l2/2·|coef|², intercept
    free), with every coefficient bounded below by zero (L-BFGS-B)."""
    from scipy.optimize import minimize

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef, b = theta[:-1], theta[-1]
        z = x @ coef + b
        # log(1 + e^z) - y·z, computed without overflow
        value = float(np.sum(w * (np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * coef @ coef)
        residual = w * (1.0 / (1.0 + np.exp(-z)) - y)
        grad = np.append(x.T @ residual + l2 * coef, residual.sum())
        return value, grad

    start = np.zeros(x.shape[1] + 1)
    bounds = [(0.0, None)] * x.shape[1] + [(None, None)]
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return np.asarray(result.x[:-1], dtype=np.float64), float(result.x[-1])


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Probability that a right top page scores above a wrong one (ties count half)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return None
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def model_origin(setting: ConfidenceModel | None, index_model: ConfidenceModel | None) -> str:
    """Which model scores reranked answers, in words (for ``supportbot eval``)."""
    if setting is not None:
        return "SUPPORTBOT_CONFIDENCE_MODEL"
    if index_model is not None:
        held = dict(index_model.info).get("held_out_auc")
        return f"learnt by this index's build (held-out AUC on its mined questions {held})"
    return "the shipped model (this index has none of its own)"


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
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    l2: float = 1.0,
    signals: Sequence[str] = SIGNALS,
    standardise: bool = False,
) -> np.ndarray:
    """Out-of-fold probabilities: each row scored by a model that never saw it.

    Folds are stratified by label and shuffled with ``seed``, so the split is reproducible.
    """
    fold_of = fold_assignment(y, folds=folds, seed=seed)
    out = np.zeros(len(y))
    for f in range(int(fold_of.max()) + 1):
        test = fold_of == f
        model = fit_confidence(x[~test], y[~test], l2=l2, signals=signals, standardise=standardise)
        out[test] = [model.probability(row) for row in x[test]]
    return out
