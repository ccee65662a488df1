"""The confidence learnt at index build: signals, fit, file, build step and its fallbacks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bot.retrieval.confidence import (
    ALL_SIGNALS,
    CONFIDENCE_FILE,
    SIGNALS,
    ConfidenceModel,
    auc,
    confidence_features,
    default_confidence_model,
    fit_confidence,
    load_index_confidence,
)
from bot.retrieval.index import load_index
from bot.retrieval.search import Hit, SearchParams, search
from bot.retrieval.text import lexical_tokens
from index_builder import confidence_training, reranker_training
from index_builder.confidence_training import (
    ConfidenceRow,
    describe,
    fold_of,
    held_out_scores,
)
from tests.retrieval.test_rerank import _linked_corpus


def _hit(doc_id: str, rerank: float | None, *, title: str = "", kind: str = "page") -> Hit:
    return Hit(
        doc_id=doc_id,
        title=title or doc_id,
        url="u",
        kind=kind,
        score=0.03,
        dense=0.6,
        lexical=1.0,
        symbol=None,
        dense_rank=2,
        lexical_rank=4,
        section="s",
        excerpt="e",
        rerank=rerank,
    )


def test_extra_signals_by_hand() -> None:
    hits = [
        _hit("a", 3.0, title="EarlyStopping callback", kind="api"),
        _hit("b", 2.0),
        _hit("c", 1.0),
        _hit("d", None),  # not reranked: not compared with reranked scores
    ]
    terms = frozenset(lexical_tokens("how do I use early stopping"))
    x = dict(zip(ALL_SIGNALS, confidence_features(hits, ALL_SIGNALS, terms).tolist(), strict=True))
    e = [math.exp(s - 3.0) for s in (3.0, 2.0, 1.0)]
    assert x["lead"] == 1.0 and x["lead3"] == 2.0
    assert x["softmax_top"] == pytest.approx(e[0] / sum(e))
    title = set(lexical_tokens("EarlyStopping callback"))
    assert x["title_overlap"] == pytest.approx(len(title & terms) / len(title))
    assert x["dense_rr"] == 0.5 and x["lexical_rr"] == 0.25 and x["kind_api"] == 1.0
    # The shipped signals are the first columns, computed as before.
    assert confidence_features(hits).tolist() == [x[s] for s in SIGNALS]


def test_a_model_names_its_signals_and_round_trips(tmp_path: Path) -> None:
    model = ConfidenceModel(-1.0, (0.5, 2.0), signals=("lead", "softmax_top"), info=(("n", 3),))
    path = model.save(tmp_path)
    assert path.name == CONFIDENCE_FILE and not list(tmp_path.glob(".*.tmp"))
    loaded = load_index_confidence(tmp_path)
    assert loaded == model
    hits = [_hit("a", 2.0), _hit("b", 1.0)]
    z = -1.0 + 0.5 * 1.0 + 2.0 * (1 / (1 + math.exp(-1.0)))
    assert loaded(hits) == pytest.approx(1 / (1 + math.exp(-z)))
    with pytest.raises(ValueError, match="signals"):
        ConfidenceModel.from_json({**model.to_json(), "signals": ["lead", "nonsense"]})
    with pytest.raises(ValueError, match="one weight"):
        ConfidenceModel.from_json({**model.to_json(), "weights": [1.0]})


def test_an_index_without_or_with_a_broken_file_uses_the_shipped_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_index_confidence(tmp_path) is None
    (tmp_path / CONFIDENCE_FILE).write_text("{not json", encoding="utf-8")
    assert load_index_confidence(tmp_path) is None
    assert "using the shipped one" in caplog.text
    shipped = default_confidence_model()
    assert shipped.signals == SIGNALS


def _rows(n: int, seed: int) -> list[ConfidenceRow]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lead = rng.normal()
        right = lead + 0.5 * rng.normal() > 0
        features = np.array([1.0 + lead, lead, rng.normal(), 0.0, float(rng.random() < 0.5)])
        rows.append(
            ConfidenceRow(features, bool(right), 1 if right else 2, i % 5, i % 3 == 0, "link")
        )
    return rows


def test_the_fit_is_reproducible_and_grows_with_the_lead() -> None:
    rows = _rows(300, 1)
    x = np.asarray([r.features for r in rows])
    y = np.asarray([r.right for r in rows])
    a = fit_confidence(x, y, signals=SIGNALS, standardise=True)
    b = fit_confidence(x, y, signals=SIGNALS, standardise=True)
    assert a == b
    # Monotone in the informative signal, everything else equal.
    base = x[0].copy()
    probs = []
    for lead in (-2.0, -1.0, 0.0, 1.0, 2.0):
        row = base.copy()
        row[0], row[1] = 1.0 + lead, lead
        probs.append(a.probability(row))
    assert probs == sorted(probs) and probs[-1] - probs[0] > 0.5
    # Standardising only changes how the fit is regularised, not what the model means: with
    # almost no regularisation both give the same probabilities.
    raw = fit_confidence(x, y, l2=1e-6)
    std = fit_confidence(x, y, l2=1e-6, standardise=True)
    assert [raw.probability(r) for r in x[:5]] == pytest.approx(
        [std.probability(r) for r in x[:5]], abs=2e-3
    )


def test_held_out_scores_come_from_models_that_did_not_see_the_fold() -> None:
    rows = _rows(200, 2)
    held = held_out_scores(rows, signals=SIGNALS)
    assert np.array_equal(held, held_out_scores(rows, signals=SIGNALS))
    # The oracle for fold 0: a model fitted on the other folds, the "answers removed" rows at
    # their lower weight.
    others = [r for r in rows if r.fold != 0]
    model = fit_confidence(
        np.asarray([r.features for r in others]),
        np.asarray([r.right for r in others]),
        signals=SIGNALS,
        weight=np.array([confidence_training.REMOVED_WEIGHT if r.removed else 1.0 for r in others]),
        standardise=True,
        monotone=confidence_training.MONOTONE,
    )
    first = next(i for i, r in enumerate(rows) if r.fold == 0)
    assert held[first] == pytest.approx(model.probability(rows[first].features))
    assert (auc(held, [r.right for r in rows]) or 0) > 0.8


def test_auc_by_hand() -> None:
    assert auc([0.9, 0.1, 0.5, 0.5], [True, False, True, False]) == pytest.approx(0.875)
    assert auc([0.3], [True]) is None


def test_pages_that_repeat_a_question_word_for_word_are_its_copies() -> None:
    from bot.corpus.documents import Document
    from index_builder.reranker_training import TrainingQuery

    def page(doc_id: str, text: str) -> Document:
        return Document(
            doc_id=doc_id,
            title=doc_id,
            url="https://keras.io/x",
            source="keras-io",
            source_version="1",
            text=text,
            kind="page",
        )

    line = "Their usage is covered in the [training guide](/guides/training/)."
    docs = [
        page("guides/loop_jax", f"# JAX\n\n{line}\n"),
        page("guides/loop_torch", f"# Torch\n\n{line}\n\nMore."),
        page("guides/training", "# Training\n\nTheir usage is covered below."),
    ]
    q = TrainingQuery(
        "Their usage is covered in the training guide.",
        ("guides/training",),
        "guides/loop_jax",
        "link",
    )
    assert confidence_training.verbatim_copies([q], docs) == {q.text: ("guides/loop_torch",)}


def test_a_top_page_that_names_an_answer_is_marked_not_counted_right() -> None:
    from bot.retrieval.search import Hit

    def hit(doc_id: str, kind: str, excerpt: str) -> Hit:
        return Hit(
            doc_id=doc_id,
            title=doc_id,
            url=f"https://keras.io/{doc_id}",
            kind=kind,
            score=0.5,
            dense=0.5,
            lexical=None,
            symbol=None,
            dense_rank=1,
            lexical_rank=None,
            section="",
            excerpt=excerpt,
        )

    faq = hit("getting_started/faq", "page", "You can use an `EarlyStopping` callback.")
    guide = hit("guides/training", "page", "Callbacks run during training.")
    stop = hit("keras.callbacks.EarlyStopping", "api", "Stop training when it stops improving.")
    names = confidence_training.names_an_answer
    assert names([faq, guide, stop], [False, False, True])
    assert not names([faq, guide, stop], [False, True, False])  # the guide names nothing
    assert not names([stop, faq], [True, False])  # right on top: nothing to mark
    assert not names([], [])


def test_folds_follow_the_source_page() -> None:
    assert fold_of("guides/a") == fold_of("guides/a")
    assert len({fold_of(f"guides/{i}") for i in range(50)}) == confidence_training.FOLDS


def test_the_fold_rerankers_learn_from_what_the_served_one_learns_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from index_builder.reranker_training import TrainingQuery

    seen: list[str] = []

    def fold_rerankers(_index: object, queries: list[TrainingQuery], *_a: object, **_k: object):
        seen.extend(q.origin for q in queries)
        return {}  # no fold can be scored: no rows

    monkeypatch.setattr(confidence_training, "fold_rerankers", fold_rerankers)
    monkeypatch.setattr(reranker_training, "MIN_QUERIES", 2)  # enough prose sentences
    queries = [
        TrainingQuery("use the callback that stops training early", ("b",), "a", "link"),
        TrainingQuery("How can I save a model?", ("c",), "a", "heading"),
        TrainingQuery("keras.ops.sum adds up a tensor along an axis", ("d",), "a", "symbol"),
    ]
    rows = confidence_training.confidence_rows(
        object(),  # type: ignore[arg-type]
        queries,
        lambda texts: np.zeros((len(texts), 3)),
        SearchParams(),
        origins=("link", "heading", "symbol"),
    )
    assert rows == []
    assert sorted(seen) == ["heading", "link"]


def test_a_small_corpus_keeps_the_shipped_model_and_says_so(
    tmp_path: Path, encoder: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import load_settings
    from index_builder.build import build_index

    monkeypatch.setattr(reranker_training, "MIN_QUERIES", 5)  # a reranker, but few questions
    docs = _linked_corpus(tmp_path / "docs")
    settings = load_settings(data_dir=tmp_path / "data", docs_dir=docs, include_keras_api=False)
    report = build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    assert report.path is not None and (report.path / "reranker.json").is_file()
    assert not (report.path / CONFIDENCE_FILE).exists()
    assert report.confidence is not None and report.confidence["shipped"]
    line = describe(report.confidence)
    assert line.startswith("confidence: the shipped model (too few questions (")
    index = load_index(settings.index_root)
    assert index.reranker is not None and index.confidence is None
    query = "how do I freeze the layers of a pretrained model?"
    result = search(index, query, encoder.encode([query])[0], k=5)  # type: ignore[attr-defined]
    assert result.hits[0].rerank is not None
    assert result.confidence == default_confidence_model()(result.hits)


def test_a_build_learns_the_confidence_that_search_uses_and_copies_it(
    tmp_path: Path, encoder: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import load_settings
    from index_builder.build import build_index

    monkeypatch.setattr(reranker_training, "MIN_QUERIES", 5)
    monkeypatch.setattr(confidence_training, "MIN_ROWS", 5)
    monkeypatch.setattr(confidence_training, "MIN_EACH", 1)
    docs = _linked_corpus(tmp_path / "docs")
    settings = load_settings(data_dir=tmp_path / "data", docs_dir=docs, include_keras_api=False)
    report = build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    assert report.path is not None
    saved = json.loads((report.path / CONFIDENCE_FILE).read_text())
    info = saved["info"]
    # 6 pages x 5 linking sentences, and each again with its answers removed.
    assert info["questions"] == 30 and info["answers_removed"] == 30
    assert info["seed"] == 0 and info["key"]
    assert report.confidence is not None and report.confidence["questions"] == 30
    assert describe(report.confidence).startswith("confidence: learnt from 30 questions")

    index = load_index(settings.index_root)
    assert index.confidence is not None and index.confidence.to_json() == saved
    query = "how do I freeze the layers of a pretrained model?"
    result = search(index, query, encoder.encode([query])[0], k=5)  # type: ignore[attr-defined]
    terms = frozenset(lexical_tokens(query))
    assert result.confidence == index.confidence(result.hits, terms)
    # An operator's model still wins over the index's.
    mine = ConfidenceModel(0.0, (0.0,) * len(SIGNALS))
    overridden = search(
        index,
        query,
        encoder.encode([query])[0],  # type: ignore[attr-defined]
        k=5,
        params=SearchParams(confidence_model=mine),
    )
    assert overridden.confidence == 0.5

    # The same documents again: reranker and confidence are copied, not learnt again.
    def no_training(*_a: object, **_k: object) -> None:
        raise AssertionError("the confidence was learnt again for the same reranker")

    monkeypatch.setattr(confidence_training, "train_confidence", no_training)
    again = build_index(settings, encoder=encoder, force=True)  # type: ignore[arg-type]
    assert again.path is not None and again.path != report.path
    assert (again.path / CONFIDENCE_FILE).read_text() == (report.path / CONFIDENCE_FILE).read_text()
    assert again.confidence is not None and again.confidence["reused"]


def test_the_same_build_learns_the_same_confidence(
    tmp_path: Path, encoder: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import load_settings
    from index_builder.build import build_index

    monkeypatch.setattr(reranker_training, "MIN_QUERIES", 5)
    monkeypatch.setattr(confidence_training, "MIN_ROWS", 5)
    monkeypatch.setattr(confidence_training, "MIN_EACH", 1)
    docs = _linked_corpus(tmp_path / "docs")
    texts = []
    for name in ("a", "b"):
        settings = load_settings(data_dir=tmp_path / name, docs_dir=docs, include_keras_api=False)
        report = build_index(settings, encoder=encoder)  # type: ignore[arg-type]
        assert report.path is not None
        texts.append((report.path / CONFIDENCE_FILE).read_text())
    assert texts[0] == texts[1]


def test_eval_names_the_model_that_scored() -> None:
    from bot.retrieval.confidence import model_origin

    learnt = ConfidenceModel(0.0, (1.0,), signals=("lead",), info=(("held_out_auc", 0.7),))
    assert model_origin(None, None).startswith("the shipped model")
    assert model_origin(None, learnt).endswith("mined questions 0.7)")
    assert model_origin(learnt, learnt) == "SUPPORTBOT_CONFIDENCE_MODEL"
