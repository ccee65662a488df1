"""Hybrid search over a tiny real index (FAISS + bm25s) built from handmade documents.

Vectors are random unit vectors, never the sentence-transformer: each mode is checked against a
brute-force computation over the same index files.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import MISSING, fields, replace
from pathlib import Path

import numpy as np
import pytest

from bot.corpus.documents import Chunk, Document
from bot.errors import IndexCorruptError, IndexNotFoundError
from bot.retrieval.index import LoadedIndex, load_index
from bot.retrieval.search import Hit, SearchParams, confidence, search, sigmoid
from bot.retrieval.symbols import match_symbols
from bot.retrieval.text import clean_query, lexical_tokens
from index_builder.publish import set_current, write_version

DIM = 8

DOCS = [
    Document(
        doc_id="keras.layers.LSTM",
        title="LSTM layer",
        url="https://keras.io/api/layers/recurrent_layers/lstm/",
        source="keras-api",
        source_version="3.0",
        text="",
        kind="api",
        aliases=("keras.layers.recurrent.LSTM", "keras.src.layers.LSTM"),
    ),
    Document(
        doc_id="keras.callbacks.EarlyStopping",
        title="EarlyStopping",
        url="https://keras.io/api/callbacks/early_stopping/",
        source="keras-api",
        source_version="3.0",
        text="",
        kind="api",
        aliases=("keras.callbacks.early_stopping.EarlyStopping",),
    ),
    Document(
        doc_id="keras.Model.fit",
        title="Model.fit",
        url="https://keras.io/api/models/model_training_apis/#fit-method",
        source="keras-api",
        source_version="3.0",
        text="",
        kind="api",
        aliases=("keras.models.Model.fit",),
    ),
    Document(
        doc_id="guides/transfer_learning",
        title="Transfer learning & fine-tuning",
        url="https://keras.io/guides/transfer_learning/",
        source="keras-io",
        source_version="abc",
        text="",
    ),
    Document(
        doc_id="guides/writing_a_custom_training_loop",
        title="Writing a training loop from scratch",
        url="https://keras.io/guides/writing_a_custom_training_loop/",
        source="keras-io",
        source_version="abc",
        text="",
    ),
    Document(
        doc_id="getting_started/faq",
        title="Keras FAQ",
        url="https://keras.io/getting_started/faq/",
        source="keras-io",
        source_version="abc",
        text="",
    ),
]

_CHUNK_TEXTS = {
    "keras.layers.LSTM": [
        ("LSTM", "Long short-term memory recurrent layer for sequences."),
        ("LSTM > Arguments", "units: dimensionality of the output space. dropout rate."),
        ("LSTM > Call arguments", "return_sequences returns the full sequence of outputs."),
        ("LSTM > Example", "inputs of shape batch, timesteps, features; cuDNN kernel."),
    ],
    "keras.callbacks.EarlyStopping": [
        ("EarlyStopping", "Stop training when a monitored metric has stopped improving."),
        ("EarlyStopping > Arguments", "patience: epochs with no improvement to wait."),
        ("EarlyStopping > Example", "restore_best_weights restores the best epoch weights."),
    ],
    "keras.Model.fit": [
        ("fit", "Trains the model for a fixed number of epochs on a dataset."),
        ("fit > Arguments", "batch_size, epochs, validation_split, callbacks list."),
        ("fit > Returns", "A History object with loss and metric values per epoch."),
        ("fit > Notes", "Shuffle the training data before each epoch."),
    ],
    "guides/transfer_learning": [
        ("Introduction", "Transfer learning reuses features learned on one problem."),
        ("Freezing layers", "Set trainable to False to freeze the base model weights."),
        ("Fine-tuning", "Unfreeze the base model and retrain with a very low learning rate."),
    ],
    "guides/writing_a_custom_training_loop": [
        ("Introduction", "Write your own training loop with GradientTape."),
        ("Training loop", "Iterate over batches, compute gradients, apply them."),
        ("Speeding up", "Compile the train step into a graph for speed."),
    ],
    "getting_started/faq": [
        ("GPU", "How can I run Keras on a GPU or several GPUs?"),
        ("Reproducibility", "Set the random seed for reproducible results."),
        ("Saving", "Save the whole model to a .keras zip archive."),
    ],
}


def make_chunks() -> list[Chunk]:
    title = {d.doc_id: d.title for d in DOCS}
    return [
        Chunk(
            doc_id=doc_id, ordinal=i, section=section, text=f"{title[doc_id]} > {section}\n\n{body}"
        )
        for doc_id, parts in _CHUNK_TEXTS.items()
        for i, (section, body) in enumerate(parts)
    ]


CHUNKS = make_chunks()


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


VECTORS = unit_rows(np.random.default_rng(2024), len(CHUNKS))


def publish(root: Path, version: str = "v1") -> Path:
    folder = write_version(
        root,
        version,
        documents=DOCS,
        chunks=CHUNKS,
        vectors=VECTORS,
        manifest={"format": 1, "model": "test-model"},
        approximate_above=10_000,
    )
    set_current(root, version)
    return folder


@pytest.fixture(scope="module")
def built_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("index") / "indexes"
    publish(root)
    return root


@pytest.fixture(scope="module")
def index(built_root: Path) -> LoadedIndex:
    return load_index(built_root)


@pytest.fixture
def fresh_root(built_root: Path, tmp_path: Path) -> Path:
    """A private copy of the published index that a test may damage."""
    root = tmp_path / "indexes"
    shutil.copytree(built_root, root)
    return root


# --- brute-force oracles ---------------------------------------------------------------------


def per_doc(
    chunk_scores: np.ndarray, chunk_doc: np.ndarray, second_weight: float, *, positive: bool
) -> list[tuple[int, float, float, int]]:
    """(doc, aggregated score, best chunk score, best chunk row), ranked (-score, doc)."""
    out = []
    for doc in sorted(set(chunk_doc.tolist())):
        rows = [int(r) for r in np.flatnonzero(chunk_doc == doc)]
        if positive:
            rows = [r for r in rows if chunk_scores[r] > 0]
        if not rows:
            continue
        rows.sort(key=lambda r: (-chunk_scores[r], r))
        best = float(chunk_scores[rows[0]])
        second = float(chunk_scores[rows[1]]) if len(rows) > 1 else 0.0
        out.append((doc, best + second_weight * second, best, rows[0]))
    out.sort(key=lambda t: (-t[1], t[0]))
    return out


def dense_oracle(
    index: LoadedIndex, q: np.ndarray, second_weight: float
) -> list[tuple[int, float, float, int]]:
    sims = VECTORS.astype(np.float64) @ q.astype(np.float64)
    return per_doc(sims, index.chunk_doc, second_weight, positive=False)


def lexical_oracle(
    index: LoadedIndex, query: str, second_weight: float
) -> list[tuple[int, float, float, int]]:
    prose, code = clean_query(query)
    tokens = [t for t in lexical_tokens(f"{prose}\n{code}") if t in index.lexical.vocab_dict]
    if not tokens:
        return []
    scores = np.asarray(index.lexical.get_scores(tokens), dtype=np.float32)
    return per_doc(scores, index.chunk_doc, second_weight, positive=True)


def ids(index: LoadedIndex, docs: list[int]) -> list[str]:
    return [index.docs[d].doc_id for d in docs]


QUERIES = [
    "lstm return sequences output shape",
    "early stopping patience restore best weights",
    "how to freeze layers for transfer learning and fine-tuning",
    "custom training loop with GradientTape gradients",
    "run keras on several GPUs",
    "epochs and batch_size in fit, callbacks list",
    "save the model to a zip archive with a random seed",
]


# --- loading ---------------------------------------------------------------------------------


def test_loaded_index_matches_what_was_written(index: LoadedIndex) -> None:
    assert index.version == "v1"
    assert index.model == "test-model"
    assert index.manifest["documents"] == len(DOCS)
    assert index.manifest["chunks"] == len(CHUNKS) == 20
    assert index.manifest["dim"] == DIM
    assert [d.doc_id for d in index.docs] == [d.doc_id for d in DOCS]
    assert index.chunk_doc.tolist() == [index.doc_rows[c.doc_id] for c in CHUNKS]
    assert [c.text for c in index.chunks] == [c.text for c in CHUNKS]
    assert index.dense.ntotal == len(CHUNKS)
    assert index.docs[0].names == ("keras.layers.LSTM", *DOCS[0].aliases)
    assert index.docs[3].names == ()  # pages have no API names


def test_canonical_id_maps_aliases(index: LoadedIndex) -> None:
    assert index.canonical_id("keras.layers.LSTM") == "keras.layers.LSTM"
    assert index.canonical_id("keras.layers.recurrent.LSTM") == "keras.layers.LSTM"
    assert index.canonical_id("keras.src.layers.LSTM") == "keras.layers.LSTM"
    assert index.canonical_id("keras.models.Model.fit") == "keras.Model.fit"
    assert index.canonical_id("guides/transfer_learning") == "guides/transfer_learning"
    assert index.canonical_id("no.such.Thing") == "no.such.Thing"


def test_load_index_without_current_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError):
        load_index(tmp_path / "indexes")
    (tmp_path / "indexes").mkdir()
    with pytest.raises(IndexNotFoundError):
        load_index(tmp_path / "indexes")


def test_load_index_current_names_missing_version(fresh_root: Path) -> None:
    (fresh_root / "CURRENT").write_text("v9\n", encoding="utf-8")
    with pytest.raises(IndexNotFoundError, match="v9"):
        load_index(fresh_root)


def test_load_index_explicit_version(fresh_root: Path) -> None:
    publish(fresh_root, "v2")
    assert load_index(fresh_root).version == "v2"
    assert load_index(fresh_root, "v1").version == "v1"


@pytest.mark.parametrize(
    "victim",
    [
        "manifest.json",
        "documents.jsonl",
        "chunks.jsonl",
        "dense.faiss",
        "lexical",
        "lexical/vocab.index.json",
    ],
)
def test_load_index_missing_file_raises_corrupt(fresh_root: Path, victim: str) -> None:
    path = fresh_root / "v1" / victim
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    with pytest.raises(IndexCorruptError):
        load_index(fresh_root)


def _edit_manifest(root: Path, **changes: object) -> None:
    path = root / "v1" / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize(
    "changes",
    [{"chunks": 21}, {"documents": 5}, {"dim": 16}, {"format": 99}],
    ids=["chunks", "documents", "dim", "format"],
)
def test_load_index_manifest_disagreement_raises_corrupt(
    fresh_root: Path, changes: dict[str, object]
) -> None:
    _edit_manifest(fresh_root, **changes)
    with pytest.raises(IndexCorruptError):
        load_index(fresh_root)


def test_load_index_chunk_count_disagreement_raises_corrupt(fresh_root: Path) -> None:
    path = fresh_root / "v1" / "chunks.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="inconsistent"):
        load_index(fresh_root)


@pytest.mark.parametrize("content", ["{", "not json at all", ""])
def test_load_index_unreadable_manifest_raises_corrupt(fresh_root: Path, content: str) -> None:
    (fresh_root / "v1" / "manifest.json").write_text(content, encoding="utf-8")
    with pytest.raises(IndexCorruptError):
        load_index(fresh_root)


def test_load_index_manifest_missing_count_raises_corrupt(fresh_root: Path) -> None:
    path = fresh_root / "v1" / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["chunks"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(IndexCorruptError):
        load_index(fresh_root)


def test_load_index_manifest_not_an_object_raises_corrupt(fresh_root: Path) -> None:
    (fresh_root / "v1" / "manifest.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(IndexCorruptError):
        load_index(fresh_root)


def test_load_index_chunk_pointing_past_documents_raises_corrupt(fresh_root: Path) -> None:
    path = fresh_root / "v1" / "chunks.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows[-1]["doc"] = len(DOCS) + 3
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(IndexCorruptError):
        load_index(fresh_root)


def test_load_index_lexical_count_disagreement_raises_corrupt(
    fresh_root: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    write_version(
        other,
        "v1",
        documents=DOCS,
        chunks=CHUNKS[:-2],
        vectors=VECTORS[:-2],
        manifest={"format": 1, "model": "test-model"},
        approximate_above=10_000,
    )
    shutil.rmtree(fresh_root / "v1" / "lexical")
    shutil.copytree(other / "v1" / "lexical", fresh_root / "v1" / "lexical")
    with pytest.raises(IndexCorruptError):
        load_index(fresh_root)


# --- dense -----------------------------------------------------------------------------------


def test_dense_mode_equals_brute_force_max_cosine(index: LoadedIndex) -> None:
    rng = np.random.default_rng(11)
    params = SearchParams(second_chunk_weight=0.0)
    for q in unit_rows(rng, 25):
        result = search(index, "anything at all", q, mode="dense", k=10, params=params)
        want = dense_oracle(index, q, 0.0)
        assert [h.doc_id for h in result.hits] == ids(index, [t[0] for t in want])
        for hit, (_, score, best, row) in zip(result.hits, want, strict=True):
            assert hit.score == pytest.approx(score, abs=1e-5)
            assert hit.dense == pytest.approx(best, abs=1e-5)
            assert hit.excerpt == index.chunks[row].text
            assert hit.section == index.chunks[row].section
            assert hit.symbol is None
            first = min(i for i, c in enumerate(CHUNKS) if c.doc_id == hit.doc_id)
            assert hit.intro == CHUNKS[first].text
        assert result.mode == "dense"
        assert result.symbols == []


def test_dense_mode_second_chunk_weight(index: LoadedIndex) -> None:
    rng = np.random.default_rng(12)
    params = SearchParams(second_chunk_weight=0.3)
    for q in unit_rows(rng, 15):
        result = search(index, "q", q, mode="dense", params=params)
        want = dense_oracle(index, q, 0.3)
        assert [h.doc_id for h in result.hits] == ids(index, [t[0] for t in want])
        for hit, (_, score, best, _) in zip(result.hits, want, strict=True):
            assert hit.score == pytest.approx(score, abs=1e-5)
            assert hit.dense == pytest.approx(best, abs=1e-5)


def test_dense_mode_query_equal_to_a_chunk_finds_its_document(index: LoadedIndex) -> None:
    for row in range(len(CHUNKS)):
        result = search(index, "", VECTORS[row], mode="dense", k=1)
        assert result.hits[0].doc_id == CHUNKS[row].doc_id
        assert result.hits[0].dense == pytest.approx(1.0, abs=1e-5)


def test_k_truncates_hits(index: LoadedIndex) -> None:
    q = VECTORS[0]
    full = search(index, "lstm", q, mode="hybrid", k=10)
    assert len(full.hits) == len(DOCS)
    for k in (0, 1, 3):
        assert search(index, "lstm", q, mode="hybrid", k=k).hits == full.hits[:k]


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_dense_modes_need_a_vector(index: LoadedIndex, mode: str) -> None:
    with pytest.raises(ValueError):
        search(index, "lstm", None, mode=mode)  # type: ignore[arg-type]


# --- lexical ---------------------------------------------------------------------------------


@pytest.mark.parametrize("query", QUERIES)
def test_lexical_mode_equals_brute_force_bm25(index: LoadedIndex, query: str) -> None:
    params = SearchParams(second_chunk_weight=0.0)
    result = search(index, query, None, mode="lexical", params=params)
    want = lexical_oracle(index, query, 0.0)
    assert want, "every test query shares words with the corpus"
    assert [h.doc_id for h in result.hits] == ids(index, [t[0] for t in want])
    for hit, (_, score, best, row) in zip(result.hits, want, strict=True):
        assert hit.score == pytest.approx(score, rel=1e-6)
        assert hit.lexical == pytest.approx(best, rel=1e-6)
        assert hit.dense is None
        assert hit.excerpt == index.chunks[row].text
    assert result.symbols == []


def test_lexical_mode_second_chunk_weight_ranking(index: LoadedIndex) -> None:
    params = SearchParams(second_chunk_weight=0.5)
    for query in QUERIES:
        result = search(index, query, None, mode="lexical", params=params)
        want = lexical_oracle(index, query, 0.5)
        assert [h.doc_id for h in result.hits] == ids(index, [t[0] for t in want])
        for hit, (_, score, _, _) in zip(result.hits, want, strict=True):
            assert hit.score == pytest.approx(score, rel=1e-6)


def test_hit_lexical_is_best_chunk_bm25_even_with_second_chunk_weight(
    index: LoadedIndex,
) -> None:
    query = "epochs batch_size training data weights"
    want = {t[0]: t[2] for t in lexical_oracle(index, query, 0.5)}
    result = search(
        index, query, None, mode="lexical", params=SearchParams(second_chunk_weight=0.5)
    )
    for hit in result.hits:
        assert hit.lexical == pytest.approx(want[index.doc_rows[hit.doc_id]], rel=1e-6)


@pytest.mark.parametrize("query", ["", "   ", "the and of", "zyxxyq qqqq", "```\n\n```"])
def test_lexical_mode_without_known_words_finds_nothing(index: LoadedIndex, query: str) -> None:
    result = search(index, query, None, mode="lexical")
    assert result.hits == []
    assert result.confidence == 0.0


# --- hybrid ----------------------------------------------------------------------------------


def expected_confidence(
    p: SearchParams,
    *,
    cosine: float | None,
    dense_rank: int | None,
    lexical_rank: int | None,
    strength: float,
    scores: list[float],
) -> float:
    """The documented logistic model, from the brute-force lists (``scores``: all fused scores)."""
    agree = (dense_rank or 99) <= 3 and (lexical_rank or 99) <= 3
    top = scores[0]
    margin = 1.0 if len(scores) == 1 or top <= 0 else (top - scores[1]) / top
    z = (
        p.conf_bias
        + p.conf_cosine * (cosine or 0.0)
        + p.conf_agreement * agree
        + p.conf_symbol * strength
        + p.conf_margin * margin
    )
    return 1.0 / (1.0 + math.exp(-z))


def hybrid_oracle(
    index: LoadedIndex,
    query: str,
    q: np.ndarray,
    p: SearchParams,
    symbols: list[tuple[str, float]],
) -> tuple[list[tuple[str, float, int | None, int | None]], float]:
    """Weighted RRF of the brute-force dense and lexical lists plus a hand-written symbol list.

    Returns (doc id, fused score, dense rank, lexical rank) best first, and the confidence.
    """
    dense_list = dense_oracle(index, q, p.second_chunk_weight)
    dense = [t[0] for t in dense_list]
    lexical = [t[0] for t in lexical_oracle(index, query, p.second_chunk_weight)]
    fused: dict[int, float] = {}
    for ranking, weight in ((dense, p.dense_weight), (lexical, p.lexical_weight)):
        for rank, doc in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + weight / (p.rrf_k + rank)
    strengths = {}
    for rank, (doc_id, strength) in enumerate(symbols, start=1):
        doc = index.doc_rows[doc_id]
        strengths[doc] = strength
        fused[doc] = fused.get(doc, 0.0) + p.symbol_weight * strength / (p.rrf_k + rank)
    ranked = sorted(fused, key=lambda d: (-fused[d], d))

    def rank_in(ranking: list[int], doc: int) -> int | None:
        return ranking.index(doc) + 1 if doc in ranking else None

    rows = [
        (index.docs[d].doc_id, fused[d], rank_in(dense, d), rank_in(lexical, d)) for d in ranked
    ]
    top = ranked[0]
    conf = expected_confidence(
        p,
        cosine=next(t[2] for t in dense_list if t[0] == top),
        dense_rank=rank_in(dense, top),
        lexical_rank=rank_in(lexical, top),
        strength=strengths.get(top, 0.0),
        scores=[fused[d] for d in ranked],
    )
    return rows, conf


HYBRID_CASES = [
    # (query, symbols it must mention, strongest first, with their strengths)
    (
        "Using tf.keras.callbacks.EarlyStopping with model.fit, patience is ignored",
        [("keras.callbacks.EarlyStopping", 1.0), ("keras.Model.fit", 0.8)],
    ),
    ("freeze layers before fine-tuning, then retrain", []),
    ("keras.layers.LSTM return_sequences shape", [("keras.layers.LSTM", 1.0)]),
]


@pytest.mark.parametrize(("query", "symbols"), HYBRID_CASES)
@pytest.mark.parametrize(
    "params",
    [
        SearchParams(),
        SearchParams(second_chunk_weight=0.0, rrf_k=10.0),
        SearchParams(dense_weight=0.5, lexical_weight=2.0, symbol_weight=3.0),
    ],
    ids=["default", "k10", "weighted"],
)
def test_hybrid_equals_weighted_rrf_by_hand(
    index: LoadedIndex, query: str, symbols: list[tuple[str, float]], params: SearchParams
) -> None:
    rng = np.random.default_rng(len(query))
    for q in unit_rows(rng, 5):
        result = search(index, query, q, mode="hybrid", params=params)
        assert [(m.doc_id, m.strength) for m in result.symbols] == symbols
        want, conf = hybrid_oracle(index, query, q, params, symbols)
        assert [h.doc_id for h in result.hits] == [t[0] for t in want]
        for hit, (_, score, dense_rank, lexical_rank) in zip(result.hits, want, strict=True):
            assert hit.score == pytest.approx(score, rel=1e-9)
            assert hit.dense_rank == dense_rank
            assert hit.lexical_rank == lexical_rank
        assert result.confidence == pytest.approx(conf, rel=1e-6)


@pytest.mark.parametrize(
    "mention",
    [
        "keras.layers.LSTM",
        "tf.keras.layers.LSTM",
        "tensorflow.keras.layers.LSTM",
        "keras.layers.recurrent.LSTM",
    ],
)
def test_named_api_symbol_comes_first_even_with_unrelated_vector(
    index: LoadedIndex, mention: str
) -> None:
    lstm_rows = np.flatnonzero(index.chunk_doc == index.doc_rows["keras.layers.LSTM"])
    # The vector points away from every LSTM chunk and straight at an unrelated chunk.
    away = -VECTORS[lstm_rows].sum(axis=0)
    unrelated = VECTORS[CHUNKS.index(next(c for c in CHUNKS if c.doc_id == "getting_started/faq"))]
    for q in (away / np.linalg.norm(away), unrelated):
        dense_first = search(index, "", q, mode="dense").hits
        assert dense_first[0].doc_id != "keras.layers.LSTM"
        result = search(index, f"My {mention} gives NaN after a few steps", q, mode="hybrid")
        top = result.hits[0]
        assert top.doc_id == "keras.layers.LSTM"
        assert top.symbol is not None
        assert top.symbol.strength == 1.0
        assert top.symbol.mention == mention


def test_symbol_in_fenced_code_counts(index: LoadedIndex) -> None:
    query = "this fails:\n```python\ncb = keras.callbacks.EarlyStopping(patience=2)\n```"
    q = VECTORS[CHUNKS.index(next(c for c in CHUNKS if c.doc_id == "getting_started/faq"))]
    result = search(index, query, q, mode="hybrid")
    assert result.symbols[0].doc_id == "keras.callbacks.EarlyStopping"
    assert result.hits[0].doc_id == "keras.callbacks.EarlyStopping"


def test_hybrid_zero_weights_reduce_to_one_signal(index: LoadedIndex) -> None:
    q = unit_rows(np.random.default_rng(3), 1)[0]
    only_dense = replace(SearchParams(), lexical_weight=0.0, symbol_weight=0.0)
    hybrid = search(index, "lstm early stopping", q, mode="hybrid", params=only_dense)
    dense = search(index, "lstm early stopping", q, mode="dense")
    assert [h.doc_id for h in hybrid.hits] == [h.doc_id for h in dense.hits]
    for rank, hit in enumerate(hybrid.hits, start=1):
        assert hit.score == pytest.approx(1.0 / (60.0 + rank))


def test_hybrid_query_symbols_match_match_symbols(index: LoadedIndex) -> None:
    query = "EarlyStopping and LSTM, then model.fit()"
    prose, code = clean_query(query)
    result = search(index, query, VECTORS[0], mode="hybrid")
    assert result.symbols == match_symbols(f"{prose}\n{code}", index.symbols)
    by_id = {h.doc_id: h for h in result.hits}
    for m in result.symbols:
        assert by_id[m.doc_id].symbol == m


def test_dense_confidence_follows_the_logistic_model(index: LoadedIndex) -> None:
    p = SearchParams()
    for row in (0, 7, 15):
        result = search(index, "", VECTORS[row], mode="dense")
        want = dense_oracle(index, VECTORS[row], p.second_chunk_weight)
        expected = expected_confidence(
            p,
            cosine=want[0][2],
            dense_rank=1,
            lexical_rank=None,  # dense mode has no lexical list: never "agreement"
            strength=0.0,
            scores=[t[1] for t in want],
        )
        assert result.confidence == pytest.approx(expected, rel=1e-5)
        assert 0.0 < result.confidence < 1.0


def test_no_hits_means_zero_confidence(index: LoadedIndex) -> None:
    assert search(index, "zyxxyq", None, mode="lexical").confidence == 0.0
    assert confidence([], SearchParams()) == 0.0


def test_sigmoid() -> None:
    assert sigmoid(0.0) == 0.5
    assert 0.0 < sigmoid(-50.0) < 0.5 < sigmoid(50.0) <= 1.0
    assert math.isclose(sigmoid(2.0) + sigmoid(-2.0), 1.0)


def test_confidence_does_not_depend_on_k(index: LoadedIndex) -> None:
    q = unit_rows(np.random.default_rng(8), 1)[0]
    query = "early stopping patience"
    full = search(index, query, q, mode="hybrid", k=10)
    assert len(full.hits) > 1
    assert search(index, query, q, mode="hybrid", k=1).confidence == pytest.approx(full.confidence)


def _hit(doc_id: str, score: float, dense: float | None) -> Hit:
    values: dict[str, object] = {
        f.name: None for f in fields(Hit) if f.default is MISSING and f.default_factory is MISSING
    }
    values.update(
        doc_id=doc_id, title=doc_id, url="https://keras.io/x/", kind="page", section="", excerpt=""
    )
    values.update(score=score, dense=dense)
    return Hit(**values)  # type: ignore[arg-type]


def test_negative_dense_scores_do_not_give_high_confidence() -> None:
    # Dense mode: every chunk points away from the query, so nothing is relevant.
    hits = [_hit("a", -0.20, -0.20), _hit("b", -0.25, -0.25), _hit("c", -0.60, -0.60)]
    slightly_positive = [_hit("a", 0.05, 0.05), _hit("b", 0.04, 0.04), _hit("c", 0.01, 0.01)]
    p = SearchParams()
    assert confidence(hits, p) <= confidence(slightly_positive, p)
    assert confidence(hits, p) < 0.5
