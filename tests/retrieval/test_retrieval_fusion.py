"""bot.retrieval.fusion against brute-force oracles on many seeded random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from bot.retrieval.fusion import DocScore, aggregate_chunks, order_by_score, top_k, weighted_rrf

# --- oracles ---------------------------------------------------------------------------------


def oracle_top_k(scores: np.ndarray, k: int) -> list[int]:
    s = scores.tolist()
    return sorted(range(len(s)), key=lambda i: (-s[i], i))[: max(k, 0)]


def oracle_aggregate(
    rows: list[int], scores: list[float], chunk_doc: list[int], second_weight: float
) -> list[tuple[int, float, int, float]]:
    """(doc, score, best_chunk, best) from scratch: sort each document's chunks itself."""
    per_doc: dict[int, list[tuple[float, int, int]]] = {}
    for position, (row, score) in enumerate(zip(rows, scores, strict=True)):
        per_doc.setdefault(chunk_doc[row], []).append((score, position, row))
    out = []
    for doc, items in per_doc.items():
        items.sort(key=lambda t: (-t[0], t[1]))
        best, _, best_row = items[0]
        second = items[1][0] if len(items) > 1 else 0.0
        out.append((doc, best + second_weight * second, best_row, best))
    out.sort(key=lambda t: (-t[1], t[0]))
    return out


def oracle_rrf(rankings: list[tuple[list[int], float]], k: float) -> dict[int, float]:
    items = {item for ranking, weight in rankings if weight != 0.0 for item in ranking}
    return {
        item: sum(
            weight / (k + ranking.index(item) + 1)
            for ranking, weight in rankings
            if weight != 0.0 and item in ranking
        )
        for item in items
    }


def random_scores(rng: np.random.Generator, n: int) -> np.ndarray:
    """Continuous, heavily tied, all-equal or signed scores, float32 or float64."""
    kind = rng.integers(4)
    if kind == 0:
        s = rng.normal(size=n)
    elif kind == 1:
        s = rng.integers(0, 4, size=n).astype(np.float64)  # many ties
    elif kind == 2:
        s = np.full(n, float(rng.normal()))  # all tied
    else:
        s = rng.uniform(-1.0, 1.0, size=n).round(1)  # signed, some ties
    return s.astype(np.float32) if rng.integers(2) else s


# --- top_k -----------------------------------------------------------------------------------


def test_top_k_matches_brute_force_on_random_arrays() -> None:
    rng = np.random.default_rng(1234)
    checked = 0
    for _ in range(600):
        n = int(rng.integers(0, 40))
        scores = random_scores(rng, n)
        before = scores.copy()
        for k in {-1, 0, 1, 2, n - 1, n, n + 1, n + 10, int(rng.integers(0, n + 2))}:
            got = top_k(scores, k)
            assert got.dtype == np.int64
            assert got.tolist() == oracle_top_k(scores, k), (scores.tolist(), k)
            checked += 1
        np.testing.assert_array_equal(scores, before)  # input untouched
    assert checked > 3000


@pytest.mark.parametrize("k", [0, 1, 5])
def test_top_k_of_nothing_is_empty(k: int) -> None:
    got = top_k(np.zeros(0, dtype=np.float32), k)
    assert got.shape == (0,)
    assert got.dtype == np.int64


def test_top_k_zero_or_negative_k_is_empty() -> None:
    scores = np.array([3.0, 1.0, 2.0])
    assert top_k(scores, 0).tolist() == []
    assert top_k(scores, -3).tolist() == []


def test_top_k_larger_than_n_returns_everything_sorted() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.9])
    assert top_k(scores, 10).tolist() == [1, 3, 2, 0]


def test_top_k_ties_at_the_cut_go_to_lower_rows() -> None:
    scores = np.array([1.0, 5.0, 3.0, 3.0, 3.0, 0.0, 3.0])
    assert top_k(scores, 3).tolist() == [1, 2, 3]
    assert top_k(scores, 4).tolist() == [1, 2, 3, 4]
    assert top_k(np.ones(6), 2).tolist() == [0, 1]


def test_top_k_handles_infinities() -> None:
    scores = np.array([0.0, np.inf, -np.inf, 1.0, np.inf])
    assert top_k(scores, 3).tolist() == [1, 4, 3]
    assert top_k(scores, 5).tolist() == [1, 4, 3, 0, 2]


# --- aggregate_chunks ------------------------------------------------------------------------


def as_tuples(ranked: list[DocScore]) -> list[tuple[int, float, int, float]]:
    return [(d.doc, d.score, d.best_chunk, d.best) for d in ranked]


@pytest.mark.parametrize("second_weight", [0.0, 0.1, 0.5, 1.0])
def test_aggregate_chunks_matches_naive_dict(second_weight: float) -> None:
    rng = np.random.default_rng(99)
    for _ in range(300):
        n_chunks = int(rng.integers(0, 30))
        n_docs = int(rng.integers(1, 8))
        chunk_doc = rng.integers(0, n_docs, size=n_chunks).astype(np.int32)
        scores = random_scores(rng, n_chunks)
        # Callers hand over candidates best first (faiss / top_k order), possibly truncated.
        rows = top_k(scores, int(rng.integers(0, n_chunks + 2)))
        got = aggregate_chunks(rows, scores[rows], chunk_doc, second_weight=second_weight)
        want = oracle_aggregate(
            rows.tolist(), scores[rows].tolist(), chunk_doc.tolist(), second_weight
        )
        assert [t[0] for t in as_tuples(got)] == [t[0] for t in want]
        assert [t[2] for t in as_tuples(got)] == [t[2] for t in want]
        for (_, score, _, best), (_, w_score, _, w_best) in zip(as_tuples(got), want, strict=True):
            assert score == pytest.approx(w_score, abs=1e-12)
            assert best == w_best


def test_aggregate_chunks_by_hand() -> None:
    chunk_doc = np.array([0, 1, 0, 2, 1, 0], dtype=np.int32)
    rows = np.array([2, 4, 0, 1, 3, 5])  # best first
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    got = aggregate_chunks(rows, scores, chunk_doc, second_weight=0.5)
    # doc 0: 0.9 + 0.5*0.7 (third chunk 0.4 ignored); doc 1: 0.8 + 0.5*0.6; doc 2: 0.5 alone.
    assert [d.doc for d in got] == [0, 1, 2]
    assert as_tuples(got) == [
        (0, pytest.approx(1.25), 2, 0.9),
        (1, pytest.approx(1.1), 4, 0.8),
        (2, 0.5, 3, 0.5),
    ]
    assert got[2] == DocScore(doc=2, score=0.5, best_chunk=3, best=0.5)
    plain = aggregate_chunks(rows, scores, chunk_doc)
    assert [(d.doc, d.score) for d in plain] == [(0, 0.9), (1, 0.8), (2, 0.5)]


def test_aggregate_chunks_second_weight_breaks_ties_only() -> None:
    chunk_doc = np.array([0, 1, 1], dtype=np.int32)
    rows = np.array([0, 1, 2])
    scores = np.array([0.5, 0.5, 0.1])
    assert [d.doc for d in aggregate_chunks(rows, scores, chunk_doc)] == [0, 1]
    weighted = aggregate_chunks(rows, scores, chunk_doc, second_weight=0.1)
    assert [d.doc for d in weighted] == [1, 0]


def test_aggregate_chunks_empty() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert aggregate_chunks(empty, np.zeros(0), np.zeros(0, dtype=np.int32)) == []


# --- weighted_rrf ----------------------------------------------------------------------------


def test_weighted_rrf_matches_direct_formula() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        universe = int(rng.integers(1, 25))
        rankings = []
        for _ in range(int(rng.integers(0, 4))):
            size = int(rng.integers(0, universe + 1))
            items = rng.permutation(universe)[:size].tolist()
            weight = float(rng.choice([0.0, 0.25, 1.0, 2.0]))
            rankings.append((items, weight))
        k = float(rng.choice([1.0, 10.0, 60.0]))
        got = weighted_rrf(rankings, k=k)
        want = oracle_rrf(rankings, k)
        assert got.keys() == want.keys()
        for item, value in want.items():
            assert got[item] == pytest.approx(value, rel=1e-12)


def test_weighted_rrf_by_hand() -> None:
    fused = weighted_rrf([([3, 1, 2], 1.0), ([1, 4], 0.5)], k=60.0)
    assert fused[3] == pytest.approx(1 / 61)
    assert fused[1] == pytest.approx(1 / 62 + 0.5 / 61)
    assert fused[2] == pytest.approx(1 / 63)
    assert fused[4] == pytest.approx(0.5 / 62)
    assert order_by_score(fused) == [1, 3, 2, 4]


def test_weighted_rrf_zero_weight_list_contributes_no_items() -> None:
    fused = weighted_rrf([([1, 2], 1.0), ([9, 1], 0.0)])
    assert set(fused) == {1, 2}
    assert fused[1] == pytest.approx(1 / 61)


def test_weighted_rrf_empty() -> None:
    assert weighted_rrf([]) == {}
    assert weighted_rrf([([], 1.0)]) == {}


# --- order_by_score --------------------------------------------------------------------------


def test_order_by_score_ties_go_to_lower_item() -> None:
    assert order_by_score({5: 1.0, 2: 1.0, 9: 2.0, 0: 0.5, 7: 1.0}) == [9, 2, 5, 7, 0]
    assert order_by_score({3: -1.0, 1: -1.0, 2: 0.0}) == [2, 1, 3]
    assert order_by_score({}) == []


def test_order_by_score_matches_sort_on_random_dicts() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        items = rng.permutation(50)[: int(rng.integers(0, 50))].tolist()
        values = rng.integers(0, 5, size=len(items)).tolist()  # plenty of ties
        scores = dict(zip(items, map(float, values), strict=True))
        want = sorted(scores, key=lambda i: (-scores[i], i))
        assert order_by_score(scores) == want
