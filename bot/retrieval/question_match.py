"""A question the docs already ask: a user's question that paraphrases a question heading.

The FAQ and the Keras 3 announcement are written as questions ("How can I interrupt training
when the validation loss isn't decreasing anymore?"), each answered by the section under it.
When a user asks the same thing in other words, that section is the answer, and the bot can
say so plainly. The learnt confidence cannot see this: it is fitted on the corpus' own
questions (link sentences, the FAQ headings with the FAQ left out), none of which paraphrases
a heading of a page in the results, so the one signal that makes the case is never in its
rows (BENCHMARKS.md, "A question the docs already ask").

So this is a rule after the search, not a learnt signal: among the first ``QUESTION_DEPTH``
hits, a page whose matching chunk sits under a question heading whose cosine with the question
reaches ``SearchParams.question_match_cosine`` goes first, and the confidence becomes at least
that cosine. Past-answer threads are left to their own near-duplicate rule
(``thread_bonus_cosine``).

Pure given the vectors: the caller (``Retriever``) encodes the headings, once each, and
moves the page (``search.with_question_match``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

QUESTION_DEPTH = 5  # how far down the results a paraphrased question heading may lift a page
_LABEL = re.compile(r"^(?:Q|Question)\s*[:.]\s*", re.I)  # "Q: Is Keras 3 compatible ...?"


@dataclass(frozen=True)
class QuestionMatch:
    rank: int  # the hit's 0-based rank before the match moved it
    heading: str  # the docs' question, as shown to the reader
    cosine: float


def question_heading(section: str) -> str | None:
    """The question that heads a chunk (the last part of its section path), else None."""
    last = section.rsplit(" > ", 1)[-1].strip()
    if not last.endswith("?"):
        return None
    text = _LABEL.sub("", last).replace("`", "").strip()
    return text if len(text.split()) >= 3 else None  # "Why?" is not a question one can match


def best_question_match(
    sections: Sequence[str],
    kinds: Sequence[str],
    query_vector: np.ndarray,
    heading_vector: Callable[[str], np.ndarray],
    *,
    min_cosine: float,
) -> QuestionMatch | None:
    """The highest-ranked hit (of the first ``QUESTION_DEPTH``) whose question heading the query
    paraphrases at ``min_cosine`` or more; the closer paraphrase wins between two such hits."""
    best: QuestionMatch | None = None
    for rank, (section, kind) in enumerate(zip(sections, kinds, strict=True)):
        if rank >= QUESTION_DEPTH:
            break
        heading = question_heading(section) if kind != "thread" else None
        if heading is None:
            continue
        cosine = float(np.dot(heading_vector(heading), query_vector))
        if cosine >= min_cosine and (best is None or cosine > best.cosine):
            best = QuestionMatch(rank, heading, cosine)
    return best
