"""A question that paraphrases a docs question heading (``bot.retrieval.question_match``).

The pure parts on hand-made vectors; then the real encoder on the keras-io-mini FAQ, through
the same ``Retriever.search`` the room, the CLI and ``eval`` call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.retrieval.question_match import (
    QUESTION_DEPTH,
    QuestionMatch,
    best_question_match,
    question_heading,
)
from bot.retrieval.search import SearchResult, with_question_match
from tests.answering.test_answering import hit


@pytest.mark.parametrize(
    ("section", "heading"),
    [
        (
            "Keras FAQ > Training-related questions > How can I freeze layers and do fine-tuning?",
            "How can I freeze layers and do fine-tuning?",
        ),
        (
            "Keras 3 > FAQ > Q: Is Keras 3 compatible with legacy Keras 2?",
            "Is Keras 3 compatible with legacy Keras 2?",
        ),
        (
            "FAQ > In `fit()`, how is the validation split computed?",
            "In fit(), how is the validation split computed?",
        ),
        ("Transfer learning & fine-tuning > Freezing layers", None),  # a statement
        ("Guide > Wait, why?", None),  # too short to tell one question from another
        ("keras.callbacks.EarlyStopping > Args > patience", None),
    ],
)
def test_question_heading_is_the_last_section_part_when_it_asks(
    section: str, heading: str | None
) -> None:
    assert question_heading(section) == heading


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


# Heading vectors at known cosines with the query [1, 0]: cos(angle) = the first coordinate.
VECTORS = {
    "How can I stop training early?": unit(0.9, np.sqrt(1 - 0.81)),
    "How can I freeze layers?": unit(0.85, np.sqrt(1 - 0.85**2)),
    "How do I cite Keras?": unit(0.2, np.sqrt(1 - 0.04)),
}
QUERY = unit(1.0, 0.0)


def match(sections: list[str], kinds: list[str] | None = None, min_cosine: float = 0.8) -> object:
    asked: list[str] = []

    def vector(text: str) -> np.ndarray:
        asked.append(text)
        return VECTORS[text]

    found = best_question_match(
        sections, kinds or ["page"] * len(sections), QUERY, vector, min_cosine=min_cosine
    )
    return found, asked


def test_the_closest_question_heading_over_the_bar_wins() -> None:
    found, asked = match(
        ["A > Intro", "FAQ > How can I freeze layers?", "FAQ > How can I stop training early?"]
    )
    assert isinstance(found, QuestionMatch)
    assert (found.rank, found.heading) == (2, "How can I stop training early?")
    assert found.cosine == pytest.approx(0.9, abs=1e-6)
    assert asked == ["How can I freeze layers?", "How can I stop training early?"]  # no statement


def test_no_match_under_the_bar_for_threads_or_past_the_depth() -> None:
    assert match(["FAQ > How do I cite Keras?"])[0] is None  # cosine 0.2
    assert match(["FAQ > How can I freeze layers?"], min_cosine=0.86)[0] is None
    assert match(["FAQ > How can I freeze layers?"], min_cosine=1.01)[0] is None  # turned off
    # A past thread titled as a question has its own near-duplicate rule.
    assert match(["How can I stop training early?"], kinds=["thread"]) == (None, [])
    deep = ["A > Intro"] * QUESTION_DEPTH + ["FAQ > How can I stop training early?"]
    found, asked = match(deep)
    assert found is None and asked == []


def test_the_match_moves_the_page_first_and_raises_the_confidence_never_lowers_it() -> None:
    hits = [hit("guides/a", 0.04), hit("faq", 0.03), hit("guides/b", 0.02)]
    base = SearchResult(query="q", mode="hybrid", hits=hits, confidence=0.3, symbols=[])
    assert with_question_match(base, None) is base
    moved = with_question_match(base, QuestionMatch(1, "How can I stop training early?", 0.87))
    assert [h.doc_id for h in moved.hits] == ["faq", "guides/a", "guides/b"]
    assert moved.confidence == pytest.approx(0.87)
    assert moved.matched_question == "How can I stop training early?"
    sure = SearchResult(query="q", mode="hybrid", hits=hits, confidence=0.95, symbols=[])
    kept = with_question_match(sure, QuestionMatch(0, "How can I stop training early?", 0.87))
    assert kept.confidence == 0.95 and [h.doc_id for h in kept.hits] == [
        "guides/a",
        "faq",
        "guides/b",
    ]


def test_retriever_answers_a_paraphrased_faq_question_with_its_entry(
    index_dir: Path, encoder: object
) -> None:
    from bot.retrieval.index import load_index
    from bot.retrieval.search import Retriever

    retriever = Retriever(load_index(index_dir), encoder)  # type: ignore[arg-type]
    asked = "How do I get reproducible results?"
    found = retriever.search(asked, k=5)
    assert found.hits[0].doc_id == "getting_started/faq"
    assert found.matched_question == "How can I get reproducible results?"
    assert found.confidence >= retriever.params.question_match_cosine
    # The same search with the rule turned off: the learnt or shipped confidence alone.
    plain = retriever.with_params(question_match_cosine=1.01).search(asked, k=5)
    assert plain.matched_question is None
    assert found.confidence >= plain.confidence
    # A question the FAQ does not ask matches nothing, whatever it ranks.
    other = retriever.search("How do I write a custom training loop?", k=5)
    assert other.matched_question is None
