"""bot.insights.doc_gaps: grouping checked against a brute-force oracle, edge cases, real
embeddings."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from bot.insights.doc_gaps import Group, group_doc_gaps, normalise_text


# --- grouping ---------------------------------------------------------------------------------
def _cos(a: list[float], b: list[float]) -> float:
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb) if na and nb else 0.0


def oracle_groups(vectors: list[list[float]], threshold: float) -> list[tuple[list[int], int]]:
    """All-pairs cosine in plain Python, then the greedy rule and the most central member."""
    n = len(vectors)
    sim = [[_cos(vectors[i], vectors[j]) for j in range(n)] for i in range(n)]
    groups: list[list[int]] = []
    for i in range(n):
        for g in groups:
            if sim[i][g[0]] >= threshold:
                g.append(i)
                break
        else:
            groups.append([i])
    result = []
    for g in groups:
        means = [sum(sim[a][b] for b in g) / len(g) for a in g]
        # Equal within float32 rounding: the earliest member.
        result.append((g, next(a for a, m in zip(g, means, strict=True) if m >= max(means) - 1e-6)))
    result.sort(key=lambda item: (-len(item[0]), item[0][0]))
    return result


def _as_pairs(groups: list[Group]) -> list[tuple[list[int], int]]:
    return [(list(g.members), g.central) for g in groups]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grouping_matches_brute_force_on_random_vectors(seed: int) -> None:
    rng = random.Random(seed)
    dim, threshold = 12, 0.6
    centres = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(6)]
    vectors = []
    for _ in range(80):
        if rng.random() < 0.7:  # near a topic, so groups of several form
            c = rng.choice(centres)
            v = [x + rng.gauss(0, 0.45) for x in c]
        else:
            v = [rng.gauss(0, 1) for _ in range(dim)]
        vectors.append(v)
    # Stay clear of ties at the threshold, where float rounding could decide either way.
    assert all(abs(_cos(a, b) - threshold) > 1e-6 for a in vectors for b in vectors if a is not b)
    got = group_doc_gaps(["q"] * len(vectors), np.array(vectors), threshold)
    expected = oracle_groups(vectors, threshold)
    assert _as_pairs(got) == expected
    assert sorted(i for g in got for i in g.members) == list(range(len(vectors)))
    assert any(g.size >= 3 for g in got) and any(g.size == 1 for g in got)


def test_grouping_edge_cases() -> None:
    assert group_doc_gaps([], np.zeros((0, 4), dtype=np.float32)) == []
    with pytest.raises(ValueError):
        group_doc_gaps(["a", "b"], np.ones((3, 4), dtype=np.float32))
    # A zero vector (empty text from some encoder) joins nothing and is its own group.
    vecs = np.array([[1, 0], [0, 0], [1, 0.1]], dtype=np.float32)
    assert _as_pairs(group_doc_gaps(["a", "", "b"], vecs, 0.6)) == [([0, 2], 0), ([1], 1)]


def test_grouping_without_an_encoder_uses_normalised_text() -> None:
    texts = [
        "How do I freeze layers?",
        "What is a Dense layer?",
        "how do i  freeze LAYERS",
        "How do I freeze layers!!",
        "???",
        "?? ?",
    ]
    assert normalise_text("  How do I\tfreeze_layers? ") == "how do i freeze layers"
    groups = group_doc_gaps(texts, None)
    assert _as_pairs(groups) == [([0, 2, 3], 0), ([1], 1), ([4], 4), ([5], 5)]


def test_grouping_real_embeddings_puts_paraphrases_together(encoder: Any) -> None:
    texts = [
        "How do I stop training when the validation loss stops improving?",
        "How do I save a trained Keras model and load it back?",
        "What is the difference between Conv2D and DepthwiseConv2D?",
        "How can I stop training early once the validation loss is no longer improving?",
        "How to install keras with GPU support on Windows?",
        "Is there a way to stop model.fit early if the validation loss plateaus?",
        "How can I save my model to disk and load it again later?",
    ]
    vectors = encoder.encode(texts)
    groups = group_doc_gaps(texts, vectors, 0.6)
    assert [list(g.members) for g in groups] == [[0, 3, 5], [1, 6], [2], [4]]
    assert _as_pairs(groups) == oracle_groups(vectors.astype(float).tolist(), 0.6)


# --- the chart --------------------------------------------------------------------------------
