"""The reranked-answer confidence, its cross-validated fit, and the coverage curve."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bot.evaluation.questions import (
    CurvePoint,
    LabelledQuestion,
    choose_threshold,
    coverage_curve,
    fit_confidence_cv,
    rule_line,
)
from bot.retrieval.confidence import (
    SIGNALS,
    ConfidenceModel,
    confidence_features,
    cross_validated,
    default_confidence_model,
    fit_confidence,
    fold_assignment,
)
from bot.retrieval.search import Hit, SearchResult
from bot.retrieval.symbols import SymbolMatch


def _hit(doc_id: str, rerank: float | None, *, dense: float = 0.5, symbol: float = 0.0) -> Hit:
    return Hit(
        doc_id=doc_id,
        title=doc_id,
        url="u",
        kind="page",
        score=0.03,
        dense=dense,
        lexical=1.0,
        symbol=SymbolMatch(doc_id, symbol, doc_id) if symbol else None,
        dense_rank=1,
        lexical_rank=2,
        section="s",
        excerpt="e",
        rerank=rerank,
    )


def test_features_of_reranked_hits() -> None:
    x = confidence_features([_hit("a", 3.0, dense=0.7, symbol=0.8), _hit("b", 1.5)])
    assert dict(zip(SIGNALS, x.tolist(), strict=True)) == {
        "top_score": 3.0,
        "lead": 1.5,
        "cosine": 0.7,
        "symbol": 0.8,
        "agreement": 1.0,
    }
    assert confidence_features([]).tolist() == [0.0] * len(SIGNALS)


def test_the_shipped_model_loads_and_grows_with_the_lead() -> None:
    model = default_confidence_model()
    assert len(model.weights) == len(SIGNALS)
    close = model([_hit("a", 2.0), _hit("b", 1.9)])
    clear = model([_hit("a", 6.0), _hit("b", 1.9)])
    assert 0.0 < close < clear < 1.0


def test_model_json_round_trip(tmp_path: Path) -> None:
    model = ConfidenceModel(bias=-1.0, weights=(0.1, 0.2, 0.3, 0.4, 0.5))
    path = tmp_path / "c.json"
    path.write_text(json.dumps(model.to_json()), encoding="utf-8")
    loaded = ConfidenceModel.load(path)
    assert loaded.weights == model.weights and loaded.bias == model.bias
    with pytest.raises(ValueError, match="signals"):
        ConfidenceModel.from_json({**model.to_json(), "signals": ["x"]})


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(SIGNALS)))
    y = (x[:, 1] + 0.3 * rng.normal(size=n)) > 0
    return x, y


def test_cross_validated_scores_come_from_models_that_did_not_see_the_row() -> None:
    x, y = _data(60, 0)
    held = cross_validated(x, y, folds=5, seed=1)
    assert held.shape == (60,)
    assert np.array_equal(held, cross_validated(x, y, folds=5, seed=1))  # reproducible
    in_sample = np.array([fit_confidence(x, y).probability(r) for r in x])
    assert not np.allclose(held, in_sample)
    # The oracle: row 0's score is that of a model fitted on the other folds only.
    fold = fold_assignment(y, folds=5, seed=1)
    others = fold != fold[0]
    assert held[0] == pytest.approx(fit_confidence(x[others], y[others]).probability(x[0]))
    # The informative signal is learnt: held-out AUC well above chance.
    pos, neg = held[y], held[~y]
    assert np.mean(pos[:, None] > neg[None, :]) > 0.8


def test_coverage_curve_by_hand() -> None:
    rows = [(0.9, 1, True), (0.8, 2, True), (0.4, 1, True), (0.2, None, True), (0.7, None, False)]
    c = {p.threshold: p for p in coverage_curve(rows, thresholds=(0.5, 0.75, 0.95))}
    assert c[0.5] == CurvePoint(0.5, 0.5, 0.5, 1.0, 0.0)
    assert c[0.75] == CurvePoint(0.75, 0.5, 0.5, 1.0, 1.0)
    assert c[0.95] == CurvePoint(0.95, 0.0, None, None, 1.0)


def test_choose_threshold_replies_most_within_the_bars() -> None:
    curve = [
        CurvePoint(0.3, 0.9, 0.7, 0.9, 0.5),
        CurvePoint(0.5, 0.6, 0.92, 1.0, 0.85),
        CurvePoint(0.7, 0.4, 1.0, 1.0, 1.0),
    ]
    assert choose_threshold(curve) == curve[1]
    assert choose_threshold(curve, min_precision=0.99) == curve[2]
    assert choose_threshold(curve[:1]) is None
    assert rule_line(curve[1]) == (
        "threshold 0.50 keeps top-1 precision >= 0.90 and unanswerable quiet >= 0.80 while "
        "replying to 60% of answerable questions"
    )
    assert rule_line(None).startswith("no threshold keeps")


def test_fit_confidence_cv_on_labelled_questions() -> None:
    """A search whose lead predicts correctness: the fit finds it, reports held-out numbers."""
    rng = np.random.default_rng(7)
    questions, results = [], {}
    for i in range(40):
        answerable = i % 10 != 9
        right = i % 3 != 0 and answerable
        lead = (2.0 if right else 0.2) + 0.3 * rng.normal()
        top = "good" if right else "bad"
        q = f"question {i}"
        questions.append(LabelledQuestion(str(i), q, ("good",) if answerable else (), answerable))
        results[q] = SearchResult(
            query=q,
            mode="hybrid",
            confidence=0.0,
            symbols=[],
            hits=[_hit(top, 1.0 + lead), _hit("other", 1.0)],
        )
    fit = fit_confidence_cv(questions, results.__getitem__, folds=4, seed=0)
    assert fit.auc is not None and fit.auc > 0.9
    assert fit.model.weights[SIGNALS.index("lead")] > 0
    assert fit.chosen is not None and fit.chosen.top1_precision >= 0.9


def test_consensus_is_the_top_page_and_a_runner_up_naming_each_other() -> None:
    from bot.retrieval.confidence import SIGNAL_FUNCTIONS

    consensus = SIGNAL_FUNCTIONS["consensus"]
    faq = replace(_hit("getting_started/faq", 1.0), title="Keras FAQ")
    faq = replace(faq, excerpt="You can use an `EarlyStopping` callback: see the callbacks docs.")
    guide = replace(_hit("guides/training", 0.5), title="Training with built-in methods")
    stop = _hit("keras.callbacks.EarlyStopping", 0.2)
    stop = replace(stop, kind="api", excerpt="Stop training when a metric stopped improving.")
    assert consensus([faq, guide, stop], frozenset()) == 1.0
    # The API page on top, named by the FAQ below it: the same agreement, read the other way.
    assert consensus([stop, faq, guide], frozenset()) == 1.0
    # Past the two runners-up it does not count; nor does a name inside a longer identifier.
    assert consensus([faq, guide, guide, stop], frozenset()) == 0.0
    longer = replace(faq, excerpt="See `EarlyStoppingAtMinLoss` in the guide.")
    assert consensus([longer, guide, stop], frozenset()) == 0.0
    # Short API names ("Add") match too much prose to count.
    add = replace(stop, title="keras.layers.Add", doc_id="keras.layers.Add")
    assert consensus([replace(faq, excerpt="Add a layer."), add], frozenset()) == 0.0


def test_a_monotone_fit_matches_the_plain_one_when_no_bound_binds() -> None:
    """The bounded fit minimises the same objective: where every plain weight is positive
    it finds the same model (the plain fit is the oracle)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 3))
    z = 1.5 * x[:, 0] + 0.8 * x[:, 1] + 0.3 * x[:, 2] - 0.2
    y = rng.random(400) < 1.0 / (1.0 + np.exp(-z))
    w = np.where(rng.random(400) < 0.3, 0.5, 1.0)
    signals = ("top_score", "lead", "cosine")
    plain = fit_confidence(x, y, signals=signals, weight=w, standardise=True)
    bounded = fit_confidence(x, y, signals=signals, weight=w, standardise=True, monotone=True)
    assert min(plain.weights) > 0
    np.testing.assert_allclose(bounded.weights, plain.weights, atol=1e-4)
    assert abs(bounded.bias - plain.bias) < 1e-4


def test_a_monotone_fit_keeps_a_signal_from_counting_against_the_top_page() -> None:
    """A signal that only stands in for another on the training rows gets a negative plain
    weight; bounded, it gets none, and the other signals still fit."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=500)
    b = a + 0.3 * rng.normal(size=500)  # b follows a; only a decides
    y = rng.random(500) < 1.0 / (1.0 + np.exp(-(2.0 * a - 1.2 * b)))
    x = np.column_stack([a, b])
    signals = ("top_score", "cosine")
    plain = fit_confidence(x, y, signals=signals, standardise=True)
    bounded = fit_confidence(x, y, signals=signals, standardise=True, monotone=True)
    assert plain.weights[1] < 0
    assert bounded.weights[1] == 0.0 and bounded.weights[0] > 0
