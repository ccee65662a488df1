"""Doc gaps: low-confidence questions grouped by meaning (or, without an encoder, by their
normalised text), each group shown by its most central question. Pure: vectors come in."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from bot.insights.records import QuestionRecord
from bot.timeutil import as_utc

DOC_GAP_THRESHOLD = 0.6
_TIE = 1e-6  # cosines closer than this are equal (float32 embeddings)


@dataclass(frozen=True)
class Group:
    members: tuple[int, ...]  # indices into the input, ascending; members[0] seeded the group
    central: int  # the member with the highest mean cosine to the group (earliest on a tie)

    @property
    def size(self) -> int:
        return len(self.members)


def normalise_text(text: str) -> str:
    """Case, punctuation and spacing folded: "How do I X?" and "how do i x" are one question."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    words = re.sub(r"[\W_]+", " ", folded).strip()
    return words or folded.strip()


def _sorted_groups(groups: list[Group]) -> list[Group]:
    return sorted(groups, key=lambda g: (-g.size, g.members[0]))


def _groups_by_text(texts: Sequence[str]) -> list[Group]:
    by_key: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        by_key.setdefault(normalise_text(text), []).append(i)
    return _sorted_groups([Group(tuple(m), m[0]) for m in by_key.values()])


def _seeded_members(unit: np.ndarray, threshold: float) -> list[list[int]]:
    """Each unit vector joins the first group whose seed is close enough, else seeds one."""
    seeds = np.empty_like(unit)
    members: list[list[int]] = []
    for i, vector in enumerate(unit):
        if members:
            hits = np.flatnonzero(seeds[: len(members)] @ vector >= threshold)
            if hits.size:
                members[int(hits[0])].append(i)
                continue
        seeds[len(members)] = vector
        members.append([i])
    return members


def group_doc_gaps(
    texts: Sequence[str], vectors: np.ndarray | None, threshold: float = DOC_GAP_THRESHOLD
) -> list[Group]:
    """Greedy single pass: each text joins the first group (in creation order) whose seed has
    cosine ≥ ``threshold`` with it, else seeds a new one. Largest groups first.

    Seeds, not running centroids, decide membership so that a group cannot drift away from
    what it started as, and the result depends only on the order of the input. With
    ``vectors`` None, texts group by ``normalise_text`` instead.
    """
    if vectors is None:
        return _groups_by_text(texts)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ValueError(f"{len(texts)} texts but vectors of shape {vectors.shape}")
    unit = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(unit, axis=1, keepdims=True)
    unit = unit / np.where(norms > 0, norms, 1.0)  # a zero vector stays zero: joins nothing
    groups = []
    for m in _seeded_members(unit, threshold):
        sub = unit[m]
        closeness = (sub @ sub.T).mean(axis=1)
        # Ties (always, in a pair) go to the earlier question, whatever the float rounding.
        central = int(np.flatnonzero(closeness >= closeness.max() - _TIE)[0])
        groups.append(Group(tuple(m), m[central]))
    return _sorted_groups(groups)


@dataclass(frozen=True)
class DocGap:
    representative: QuestionRecord
    members: list[QuestionRecord]  # in the order asked

    @property
    def count(self) -> int:
        return len(self.members)

    @property
    def last_asked(self) -> datetime:
        return max(as_utc(q.asked_at) for q in self.members)


def doc_gaps_from_groups(
    candidates: Sequence[QuestionRecord], groups: Sequence[Group], limit: int
) -> list[DocGap]:
    return [
        DocGap(candidates[g.central], [candidates[i] for i in g.members]) for g in groups[:limit]
    ]
