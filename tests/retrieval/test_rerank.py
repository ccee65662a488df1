"""The learnt second stage: features against a by-hand oracle, training, and reranking."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from bot.corpus.documents import Document
from bot.retrieval.index import load_index
from bot.retrieval.rerank import (
    FEATURES,
    CandidateEvidence,
    Reranker,
    candidate_features,
    fit_pairwise,
    kind_features,
    load_reranker,
)
from bot.retrieval.search import SearchParams, first_stage, rerank, search
from index_builder import reranker_training
from index_builder.reranker_training import corpus_key, learning_queries, mine_queries


def test_candidate_features_match_a_by_hand_computation() -> None:
    cands = [
        CandidateEvidence(
            doc=0, fused=0.03, dense_rank=2, lexical_rank=None, lexical_best=None, symbol=0.0
        ),
        CandidateEvidence(
            doc=1, fused=0.05, dense_rank=1, lexical_rank=4, lexical_best=6.0, symbol=0.8
        ),
    ]
    x = candidate_features(
        cands,
        chunk_cosines=[np.array([0.2, 0.5, 0.4]), np.array([0.7])],
        first_cosines=[0.2, 0.7],
        lexical_max=8.0,
        title_terms=[frozenset({"early", "stop"}), frozenset()],
        query_terms=frozenset({"stop", "train"}),
        kinds=[kind_features("guides/x", "page", "keras-io"), kind_features("keras.A", "api", "p")],
        chunk_counts=[3, 1],
        rrf_k=60.0,
    )
    col = {name: i for i, name in enumerate(FEATURES)}
    assert x.shape == (2, len(FEATURES))
    assert x[0, col["cos_best"]] == pytest.approx(0.5)
    assert x[0, col["cos_second"]] == pytest.approx(0.4)
    assert x[0, col["cos_first"]] == pytest.approx(0.2)
    assert x[0, col["cos_mean"]] == pytest.approx((0.2 + 0.5 + 0.4) / 3)
    assert x[0, col["lex_best"]] == 0.0 and x[0, col["lex_rr"]] == 0.0
    assert x[0, col["dense_rr"]] == pytest.approx(0.5)
    assert x[0, col["title_overlap"]] == pytest.approx(0.5)
    assert x[0, col["kind_guide"]] == 1.0 and x[0, col["kind_api"]] == 0.0
    assert x[0, col["log_chunks"]] == pytest.approx(math.log1p(3))
    assert x[1, col["cos_second"]] == 0.0  # one chunk: no second best
    assert x[1, col["lex_best"]] == pytest.approx(6.0 / 8.0)
    assert x[1, col["lex_rr"]] == pytest.approx(0.25)
    assert x[1, col["symbol"]] == pytest.approx(0.8)
    assert x[1, col["fused"]] == pytest.approx(3.0)
    assert x[1, col["title_overlap"]] == 0.0 and x[1, col["kind_api"]] == 1.0


def test_kind_features_tell_the_kinds_apart() -> None:
    assert kind_features("keras.layers.Dense", "api", "python-api:keras") == (1, 0, 0, 0, 0)
    assert kind_features("keras_nlp.models.Bert", "api", "site-map") == (0, 1, 0, 0, 0)
    assert kind_features("guides/functional_api", "page", "keras-io") == (0, 0, 1, 0, 0)
    assert kind_features("examples/vision/mnist", "page", "keras-io") == (0, 0, 0, 1, 0)
    assert kind_features("getting_started/faq", "page", "keras-io") == (0, 0, 0, 0, 1)


def _groups(seed: int, n: int = 60) -> list[tuple[np.ndarray, np.ndarray]]:
    """Queries whose right candidate has the largest feature 0; the rest is noise."""
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(n):
        x = rng.normal(size=(8, len(FEATURES)))
        y = np.zeros(8, dtype=bool)
        y[int(np.argmax(x[:, 0]))] = True
        groups.append((x, y))
    return groups


def test_fit_pairwise_learns_the_informative_feature_and_is_deterministic() -> None:
    model = fit_pairwise(_groups(1, n=200), seed=3)
    assert int(np.argmax(np.abs(model.weights))) == 0 and model.weights[0] > 0
    # On fresh queries it mostly agrees with the oracle (argmax of feature 0); the noise
    # features get small weights, so a near-tie can still go the other way.
    fresh = _groups(2, n=100)
    agree = sum(bool(y[int(np.argmax(model.score(x)))]) for x, y in fresh)
    assert agree >= 90
    again = fit_pairwise(_groups(1, n=200), seed=3)
    assert np.array_equal(model.weights, again.weights)


def test_fit_pairwise_needs_a_query_with_both_labels() -> None:
    x = np.zeros((3, len(FEATURES)))
    with pytest.raises(ValueError, match="both a relevant"):
        fit_pairwise([(x, np.array([True, True, True]))])


def test_reranker_round_trips_through_its_file(tmp_path: Path) -> None:
    model = fit_pairwise(_groups(4))
    model.save(tmp_path)
    loaded = load_reranker(tmp_path)
    assert loaded is not None
    x = _groups(5, n=1)[0][0]
    assert np.allclose(loaded.score(x), model.score(x), atol=1e-4)


def test_a_reranker_of_another_feature_set_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = fit_pairwise(_groups(4)).to_json()
    data["features"] = data["features"][:-1]
    (tmp_path / "reranker.json").write_text(json.dumps(data), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert load_reranker(tmp_path) is None
    assert "rebuild the index" in caplog.text
    assert load_reranker(tmp_path / "nothing-here") is None


def _doc(doc_id: str, text: str, *, kind: str = "page", title: str = "T") -> Document:
    path = doc_id if kind == "page" else "api/layers/core"
    return Document(
        doc_id=doc_id,
        title=title,
        url=f"https://keras.io/{path}/" + ("#" + doc_id.lower() if kind == "api" else ""),
        source="keras-io" if kind == "page" else "python-api:keras",
        source_version="1",
        text=text,
        kind=kind,
    )


def test_mine_queries_turns_linking_sentences_into_queries() -> None:
    docs = [
        _doc(
            "guides/a",
            "# A\n\nTo stop training early when the validation loss stalls, use the "
            "[EarlyStopping callback](/guides/b/) in your fit call.\n\n"
            "- [Guide B](/guides/b/)\n\n"
            "```python\n# a comment linking [x](/guides/b/) inside code is not prose\n```\n\n"
            "Layers such as `keras.layers.Dense` hold their weights in variables that the "
            "optimizer updates at every training step.\n\n"
            "### How can I save a model that I trained yesterday?\n\n"
            "See [the saving guide](https://keras.io/guides/b/) for the details.\n",
        ),
        _doc("guides/b", "# B\n\nBack to [A](/guides/a/).\n"),
        _doc("keras.layers.Dense", "Dense layer.", kind="api"),
    ]
    queries = mine_queries(docs)
    by_origin = {(q.origin, q.relevant): q for q in queries}
    link = by_origin[("link", ("guides/b",))]
    assert link.text.startswith("To stop training early") and "](" not in link.text
    assert link.source == "guides/a"
    assert by_origin[("symbol", ("keras.layers.Dense",))].text.startswith("Layers such as keras")
    heading = by_origin[("heading", ("guides/b",))]
    assert heading.text == "How can I save a model that I trained yesterday?"
    # The bare list item and the short back-link only repeat a title: not queries.
    assert not [q for q in queries if q.source == "guides/b"]
    assert sum(q.origin == "link" for q in queries) == 1


def test_the_reranker_learns_from_prose_sentences_unless_there_are_too_few(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from index_builder.reranker_training import TrainingQuery

    prose = [
        TrainingQuery(f"to do task {i} use the page that shows it", ("b",), "a", "link")
        for i in range(3)
    ] + [TrainingQuery("How can I save a model?", ("c",), "a", "heading")]
    named = [TrainingQuery("keras.ops.sum adds up a tensor along an axis", ("d",), "a", "symbol")]
    # Users name the API of the code they are stuck with: sentences that name their answer
    # in backticks are not learnt from ...
    monkeypatch.setattr(reranker_training, "MIN_QUERIES", 4)
    assert learning_queries(prose + named) == prose
    # ... unless the corpus has too few others (the keras API alone): then every one is.
    monkeypatch.setattr(reranker_training, "MIN_QUERIES", 5)
    assert learning_queries(prose + named) == prose + named


def _linked_corpus(root: Path) -> Path:
    """A small keras-io-style docs folder whose pages link each other (a reranker can learn)."""
    topics = {
        "early_stopping": "stop training when the validation loss stops improving with a callback",
        "saving": "save a trained model to a file and load it back later for inference",
        "transfer": "freeze the layers of a pretrained base model and fine-tune the top",
        "custom_layers": "write a new layer class with build and call and trainable weights",
        "data_loading": "load images from a directory into a dataset for training",
        "mixed_precision": "train faster on GPUs with float16 computations and loss scaling",
    }
    md = root / "guides" / "md"
    md.mkdir(parents=True)
    names = list(topics)
    for i, name in enumerate(names):
        others = [n for n in names if n != name]
        lines = [
            f"# Guide to {name.replace('_', ' ')}",
            "",
            f"This guide shows how to {topics[name]}.",
        ]
        for j, other in enumerate(others):
            lines += [
                "",
                f"## Section {j}",
                "",
                f"When you need to {topics[other]}, read [this page](/guides/{other}/) "
                f"before going on with the steps of part {i}.{j}.",
            ]
        (md / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_a_build_learns_a_reranker_that_search_uses(
    tmp_path: Path, encoder: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import load_settings
    from index_builder.build import build_index

    monkeypatch.setattr(reranker_training, "MIN_QUERIES", 5)
    docs = _linked_corpus(tmp_path / "docs")
    settings = load_settings(data_dir=tmp_path / "data", docs_dir=docs, include_keras_api=False)
    report = build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    assert report.path is not None and (report.path / "reranker.json").is_file()
    info = json.loads((report.path / "reranker.json").read_text())["info"]
    assert info["queries"] >= 5 and info["corpus"]
    assert report.reranker is not None and report.reranker["queries"] == info["queries"]

    index = load_index(settings.index_root)
    assert index.reranker is not None
    query = "how do I freeze the layers of a pretrained model?"
    vector = encoder.encode([query])[0]  # type: ignore[attr-defined]
    p = SearchParams(rerank_candidates=4)
    result = search(index, query, vector, k=6, params=p)
    stage = first_stage(index, query, vector, params=p)
    fused_order = sorted(stage.fused, key=lambda d: (-stage.fused[d], d))
    # The oracle: the reranker's own scores, computed by hand, order the top 4; the rest keep
    # the fusion's order.
    order, scores = rerank(index, stage, vector, p)
    head = fused_order[:4]
    assert sorted(order[:4]) == sorted(head)
    assert [scores[d] for d in order[:4]] == sorted((scores[d] for d in head), reverse=True)
    assert order[4:] == fused_order[4:]
    assert [h.doc_id for h in result.hits] == [index.docs[d].doc_id for d in order[:6]]
    assert all(h.rerank is not None for h in result.hits[:4])
    assert all(h.rerank is None for h in result.hits[4:])
    assert 0.0 <= result.confidence <= 1.0


def test_a_rebuild_with_the_same_documents_reuses_the_reranker(
    tmp_path: Path, encoder: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import load_settings
    from index_builder.build import build_index

    monkeypatch.setattr(reranker_training, "MIN_QUERIES", 5)
    docs = _linked_corpus(tmp_path / "docs")
    settings = load_settings(data_dir=tmp_path / "data", docs_dir=docs, include_keras_api=False)
    first = build_index(settings, encoder=encoder)  # type: ignore[arg-type]

    def no_training(*_a: object, **_k: object) -> None:
        raise AssertionError("the reranker was learnt again for the same documents")

    monkeypatch.setattr(reranker_training, "train_reranker", no_training)
    second = build_index(settings, encoder=encoder, force=True)  # type: ignore[arg-type]
    assert first.path and second.path and first.path != second.path
    assert (second.path / "reranker.json").read_text() == (first.path / "reranker.json").read_text()


def test_a_tiny_corpus_gets_no_reranker_and_ranks_as_before(index_dir: Path) -> None:
    index = load_index(index_dir)
    assert index.reranker is None  # the fixture corpus has no links to learn from
    assert not (index.path / "reranker.json").exists()


def test_corpus_key_ignores_past_answer_threads() -> None:
    page = _doc("guides/a", "# A\n\ntext\n")
    thread = Document(
        doc_id="thread/1",
        title="q",
        url="https://x",
        source="past-answers",
        source_version="1",
        text="# q\n\nbody",
        kind="thread",
    )
    assert corpus_key([page], "m") == corpus_key([page, thread], "m")
    assert corpus_key([page], "m") != corpus_key([page], "other-model")


def test_reranker_scores_standardised_features() -> None:
    model = Reranker(
        weights=np.eye(len(FEATURES))[0],
        mean=np.full(len(FEATURES), 1.0),
        scale=np.full(len(FEATURES), 2.0),
    )
    x = np.zeros((2, len(FEATURES)))
    x[:, 0] = [3.0, 5.0]
    assert model.score(x).tolist() == [1.0, 2.0]


def test_an_index_from_an_older_training_is_built_again(
    tmp_path: Path, encoder: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrading the bot gives an unchanged corpus the current reranker, not the old index."""
    from bot.settings import load_settings
    from index_builder import build
    from tests.conftest import MINI_DOCS

    settings = load_settings(data_dir=tmp_path, docs_dir=MINI_DOCS, include_keras_api=False)
    monkeypatch.setattr(build, "TRAINING_VERSION", "before-the-reranker")
    old = build.build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    monkeypatch.undo()
    again = build.build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    assert old.published and again.published and again.version != old.version
    assert again.embedded == 0  # the vectors come from the cache: only the training reruns
    assert not build.build_index(settings, encoder=encoder).published  # type: ignore[arg-type]
