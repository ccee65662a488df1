"""The extra synthetic question families (``index_builder.query_families``) and the ablation's
pure helpers (``benchmarks/rerank_ablation.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.rerank_ablation import (
    _CONTINUOUS,
    cross,
    member,
    reciprocal_rank,
    reorder,
    section_overlap,
)
from bot.corpus.documents import Document
from bot.retrieval.index import ChunkInfo, DocInfo, LoadedIndex
from bot.retrieval.rerank import FEATURES
from bot.retrieval.symbols import SymbolTable
from bot.retrieval.text import lexical_tokens
from index_builder.query_families import fold, intro_queries, section_queries, summary_queries
from index_builder.reranker_training import TrainingQuery


def _page(doc_id: str, text: str) -> Document:
    return Document(doc_id, doc_id, f"https://keras.io/{doc_id}/", "keras-io", "1", text)


def _api(doc_id: str, text: str) -> Document:
    return Document(doc_id, doc_id, "https://x", "python-api:keras", "1", text, kind="api")


GUIDE = _page(
    "guides/transfer_learning",
    "# Transfer learning & fine-tuning\n\n"
    "Complete guide to transfer learning & fine-tuning in Keras.\n\n"
    "## Setup\n\n```python\n## not a heading inside code\nimport keras\n```\n\n"
    "## Freezing layers: understanding the `trainable` attribute\n\ntext\n\n"
    "### Training the model\n\ntext\n\n"
    "## Do it\n\ntext\n",
)


def test_section_queries_keep_specific_headings_of_tutorials_only() -> None:
    faq = _page("getting_started/faq", "# FAQ\n\n## How do I freeze layers in a model?\n")
    got = section_queries([GUIDE, faq])
    # Setup and "Training the model" are steps every tutorial has; "Do it" is too short;
    # a comment inside code is not a heading; the FAQ is no tutorial.
    assert got == [
        TrainingQuery(
            "Freezing layers: understanding the trainable attribute",
            ("guides/transfer_learning",),
            "",
            "section",
        )
    ]


def test_intro_queries_take_the_line_under_the_title() -> None:
    code_first = _page("examples/x", "# X\n\n```python\nimport keras\n```\n")
    api = _api("keras.A", "# keras.A\n\nA layer that does a thing for you.\n")
    got = intro_queries([GUIDE, code_first, api])
    assert [(q.text, q.relevant) for q in got] == [
        ("Complete guide to transfer learning & fine-tuning in Keras.", (GUIDE.doc_id,))
    ]


def test_summary_queries_skip_members_and_thin_to_the_limit() -> None:
    docs = [
        _api(
            f"keras.layers.L{i}",
            f"# keras.layers.L{i}\n\n```python\nkeras.layers.L{i}()\n```\n\n"
            f"Layer number {i} that does one thing well.\n\nMore text.\n",
        )
        for i in range(6)
    ]
    member = _api(
        "keras.layers.L0.get_config",
        "# keras.layers.L0.get_config\n\nReturns the config of the object, always.\n",
    )
    got = summary_queries([*docs, member], limit=3)
    assert [q.relevant for q in got] == [
        ("keras.layers.L0",),
        ("keras.layers.L2",),
        ("keras.layers.L4",),
    ]
    assert got[0].text == "Layer number 0 that does one thing well."
    assert len(summary_queries([*docs, member])) == 6  # the member never counts


def test_fold_is_stable_and_splits_by_page() -> None:
    a = TrainingQuery("q one", ("keras.A",), "guides/x", "link")
    b = TrainingQuery("q two", ("keras.B",), "guides/x", "link")
    own = TrainingQuery("q three", ("guides/x",), "", "section")
    assert fold(a) == fold(b) == fold(own)  # same page, same side of every split
    assert all(0 <= fold(TrainingQuery("q", (f"p{i}",), "", "intro")) < 5 for i in range(50))
    assert len({fold(TrainingQuery("q", (f"p{i}",), "", "intro")) for i in range(50)}) == 5


def test_reorder_sorts_only_the_cut_and_keeps_ties_in_order() -> None:
    y = np.array([False, False, True, False, True])
    scores = np.array([0.1, 0.5, 0.5])  # the cut is 3: rows 1 and 2 tie, row 1 stays first
    assert reorder(y, scores, 3).tolist() == [False, True, False, False, True]


@pytest.mark.parametrize("first", [0, 1, 4, 9, 10, None])
def test_reciprocal_rank_matches_a_brute_force_oracle(first: int | None) -> None:
    y = np.zeros(12, dtype=bool)
    if first is not None:
        y[first] = True
        y[min(first + 1, 11)] = True
    oracle = next((1.0 / (i + 1) for i, v in enumerate(y.tolist()) if v and i < 10), 0.0)
    assert reciprocal_rank(y) == pytest.approx(oracle)


def test_cross_adds_each_continuous_feature_per_page_kind() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((4, len(FEATURES)))
    x[:, 9:14] = np.eye(5)[[0, 2, 3, 4]]  # one kind per row
    out = cross(x)
    n = len(_CONTINUOUS)
    assert out.shape == (4, len(FEATURES) + 5 * n)
    assert not any(FEATURES[i].startswith("kind_") for i in _CONTINUOUS)
    for row in range(4):
        for k in range(5):
            block = out[row, len(FEATURES) + n * k : len(FEATURES) + n * (k + 1)]
            expected = x[row, list(_CONTINUOUS)] if x[row, 9 + k] == 1.0 else np.zeros(n)
            assert block == pytest.approx(expected)


def _hand_index() -> LoadedIndex:
    docs = [
        DocInfo("keras.Model", "keras.Model", "u", "api", "python-api:keras"),
        DocInfo("keras.Model.fit", "keras.Model.fit", "u", "api", "python-api:keras"),
        DocInfo("guides/t", "Transfer learning", "u", "page", "keras-io"),
        DocInfo("keras_nlp.X.y", "keras_nlp.X.y", "u", "api", "site-map"),
    ]
    sections = [
        (0, "keras.Model"),
        (1, "keras.Model.fit > Args"),
        (2, "Transfer learning"),
        (2, "Transfer learning > Freezing layers: the `trainable` attribute"),
        (2, "Transfer learning > Fine-tuning > Do a round of fine-tuning of the whole model"),
        (3, "keras_nlp.X.y"),
    ]
    chunks = [ChunkInfo(doc, section, section) for doc, section in sections]
    return LoadedIndex(
        path=Path("."),
        manifest={},
        docs=docs,
        chunks=chunks,
        chunk_doc=np.array([c.doc for c in chunks], dtype=np.int32),
        dense=None,
        lexical=None,
        symbols=SymbolTable.build([]),
        doc_rows={d.doc_id: i for i, d in enumerate(docs)},
    )


def test_section_overlap_matches_a_brute_force_oracle() -> None:
    index = _hand_index()
    for question in ("how do I freeze layers", "fine-tuning the whole model", "fit args", ""):
        q = frozenset(lexical_tokens(question))
        for doc in range(len(index.docs)):
            shares = [
                len(t & q) / len(t)
                for c in index.chunks
                if c.doc == doc and " > " in c.section
                for t in [frozenset(lexical_tokens(c.section.split(" > ")[-1]))]
                if len(t) >= 2
            ]
            assert section_overlap(index, doc, q) == pytest.approx(max(shares, default=0.0))
    freeze = frozenset(lexical_tokens("how do I freeze layers"))
    # "freezing layers" are two of "Freezing layers: the `trainable` attribute"'s four terms
    assert section_overlap(index, 2, freeze) == pytest.approx(0.5)
    assert section_overlap(index, 1, freeze) == 0.0  # "Args" is one term: never counted


def test_member_flags_class_members_only() -> None:
    index = _hand_index()
    no_terms: frozenset[str] = frozenset()
    assert [member(index, d, no_terms) for d in range(4)] == [0.0, 1.0, 0.0, 0.0]
