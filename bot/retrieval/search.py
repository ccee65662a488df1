"""Hybrid search over a loaded index: dense + lexical + API symbols, fused per document.

``search`` is pure given a query vector; :class:`Retriever` adds the encoder for callers that
just have text (CLI, eval, and the service's worker thread).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from bot.retrieval.encoder import Encoder
from bot.retrieval.fusion import DocScore, aggregate_chunks, order_by_score, top_k, weighted_rrf
from bot.retrieval.index import LoadedIndex
from bot.retrieval.symbols import SymbolMatch, match_symbols
from bot.retrieval.text import clean_query, lexical_tokens

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")


@dataclass(frozen=True)
class SearchParams:
    chunk_candidates: int = 300
    rrf_k: float = 60.0
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    symbol_weight: float = 1.0
    second_chunk_weight: float = 0.1
    dense_query_words: int = 120  # MiniLM reads ~256 word pieces; keep the prose, trim code
    # Confidence: logistic model of P(top document is a right answer), see ``confidence``.
    conf_bias: float = -3.3
    conf_cosine: float = 3.4
    conf_agreement: float = 0.95
    conf_symbol: float = 0.5
    conf_margin: float = 6.5
    # Past-answer threads (kind "thread", laid out by index_builder.sources.past_answers as
    # "# title / the question / ## Answer / the answer"). A thread is the right result when
    # its *question* is the new question, so a thread's score in each list is its best
    # question-chunk score plus ``thread_answer_weight`` × its best answer-chunk score
    # (instead of best chunk + ``second_chunk_weight`` × second best). The answer counts less:
    # it shares the topic more than the wording, but at equal question similarity a thread
    # that has an answer beats one that has none, which is the thread worth showing.
    thread_answer_weight: float = 0.3
    # Hybrid only: a thread whose question chunk has at least this cosine with the query is a
    # near-duplicate of it, and gets ``thread_bonus`` / (rrf_k + 1) added to its fused score
    # (``thread_bonus`` = 1 is worth a first place in one more list), so a past answer to the
    # same question outranks a generic doc page; a weaker match gets nothing.
    thread_bonus_cosine: float = 0.6
    thread_bonus: float = 1.0


@dataclass(frozen=True)
class Hit:
    doc_id: str
    title: str
    url: str
    kind: str
    score: float  # fused score (mode-specific scale)
    dense: float | None  # best chunk cosine similarity
    lexical: float | None  # best chunk BM25 score
    symbol: SymbolMatch | None
    dense_rank: int | None  # the document's rank in the dense list alone (1 = first)
    lexical_rank: int | None  # ... and in the lexical list alone
    section: str
    excerpt: str  # text of the best-matching chunk
    intro: str = ""  # text of the document's first chunk (its summary), for when the
    # best-matching chunk is all code
    meta: tuple[tuple[str, str], ...] = ()  # the document's display facts


@dataclass(frozen=True)
class SearchResult:
    query: str
    mode: Mode
    hits: list[Hit]
    confidence: float
    symbols: list[SymbolMatch]


def dense_query_text(prose: str, code: str, *, max_words: int = 120) -> str:
    words = prose.split()
    if len(words) < max_words and code:
        words += code.split()[: max_words - len(words)]
    return " ".join(words[:max_words])


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def search(
    index: LoadedIndex,
    query: str,
    query_vector: np.ndarray | None,
    *,
    mode: Mode = "hybrid",
    k: int = 10,
    params: SearchParams | None = None,
) -> SearchResult:
    p = params or SearchParams()
    prose, code = clean_query(query)
    n_chunks = len(index.chunks)
    candidates = min(p.chunk_candidates, n_chunks)

    dense_docs: list[DocScore] = []
    if mode in ("hybrid", "dense") and n_chunks:
        if query_vector is None:
            raise ValueError("dense and hybrid search need a query vector")
        qv = np.ascontiguousarray(query_vector, dtype=np.float32).reshape(1, -1)
        sims, rows = index.dense.search(qv, candidates)
        keep = rows[0] >= 0
        dense_docs = _aggregate(index, rows[0][keep], sims[0][keep], p)

    lexical_docs: list[DocScore] = []
    if mode in ("hybrid", "lexical") and n_chunks:
        vocab = index.lexical.vocab_dict
        tokens = [t for t in lexical_tokens(f"{prose}\n{code}") if t in vocab]
        if tokens:
            scores = np.asarray(index.lexical.get_scores(tokens), dtype=np.float32)
            rows_l = top_k(scores, candidates)
            rows_l = rows_l[scores[rows_l] > 0]
            lexical_docs = _aggregate(index, rows_l, scores[rows_l], p)

    symbol_matches = match_symbols(f"{prose}\n{code}", index.symbols) if mode == "hybrid" else []
    symbol_docs = [
        (index.doc_rows[m.doc_id], m) for m in symbol_matches if m.doc_id in index.doc_rows
    ]

    dense_by_doc = {d.doc: d for d in dense_docs}
    lexical_by_doc = {d.doc: d for d in lexical_docs}
    dense_rank = {d.doc: r for r, d in enumerate(dense_docs, start=1)}
    lexical_rank = {d.doc: r for r, d in enumerate(lexical_docs, start=1)}
    symbol_by_doc = {doc: m for doc, m in symbol_docs}

    if mode == "dense":
        fused = {d.doc: d.score for d in dense_docs}
    elif mode == "lexical":
        fused = {d.doc: d.score for d in lexical_docs}
    else:
        fused = weighted_rrf(
            [
                ([d.doc for d in dense_docs], p.dense_weight),
                ([d.doc for d in lexical_docs], p.lexical_weight),
            ],
            k=p.rrf_k,
        )
        # Symbol evidence counts in proportion to how explicit the mention was.
        for rank, (doc, m) in enumerate(symbol_docs, start=1):
            fused[doc] = fused.get(doc, 0.0) + p.symbol_weight * m.strength / (p.rrf_k + rank)
        # A near-duplicate past question: worth one more first place (see SearchParams).
        for d in dense_docs:
            if isinstance(d, _ThreadScore) and (d.question or -1.0) >= p.thread_bonus_cosine:
                fused[d.doc] = fused.get(d.doc, 0.0) + p.thread_bonus / (p.rrf_k + 1)

    hits: list[Hit] = []
    # Two hits at least, whatever k: the confidence looks at the runner-up.
    for doc in order_by_score(fused)[: max(k, 2)]:
        info = index.docs[doc]
        d = dense_by_doc.get(doc)
        lx = lexical_by_doc.get(doc)
        chunk_row = d.best_chunk if d else lx.best_chunk if lx else _first_chunk(index, doc)
        chunk = index.chunks[chunk_row] if chunk_row >= 0 else None
        hits.append(
            Hit(
                doc_id=info.doc_id,
                title=info.title,
                url=info.url,
                kind=info.kind,
                score=float(fused[doc]),
                dense=float(d.best) if d else None,
                lexical=float(lx.best) if lx else None,
                dense_rank=dense_rank.get(doc),
                lexical_rank=lexical_rank.get(doc),
                symbol=symbol_by_doc.get(doc),
                section=chunk.section if chunk else info.title,
                excerpt=chunk.text if chunk else "",
                intro=index.chunks[first].text if (first := _first_chunk(index, doc)) >= 0 else "",
                meta=info.meta,
            )
        )
    return SearchResult(
        query=query,
        mode=mode,
        hits=hits[:k],
        confidence=confidence(hits, p),
        symbols=symbol_matches,
    )


def _first_chunk(index: LoadedIndex, doc: int) -> int:
    return int(index.first_chunk[doc])


THREAD_KIND = "thread"
_ANSWER_HEADING = "Answer"


@dataclass(frozen=True)
class _ThreadScore(DocScore):
    question: float | None = None  # best question-chunk score (None: not among the candidates)
    answer: float | None = None  # best answer-chunk score


def is_answer_chunk(index: LoadedIndex, row: int) -> bool:
    """Whether chunk ``row`` of a thread document is (part of) its answer section.

    The chunker names a chunk's section by its heading path, title first, so the answer's
    chunks are "<title> > Answer (answered by ...)"; everything before is the question.
    """
    chunk = index.chunks[row]
    title = index.docs[chunk.doc].title.strip()
    rest = chunk.section[len(title) :] if chunk.section.startswith(title) else chunk.section
    return rest.startswith(f" > {_ANSWER_HEADING}")


def _aggregate(
    index: LoadedIndex, rows: np.ndarray, scores: np.ndarray, p: SearchParams
) -> list[DocScore]:
    """Chunk scores (best first) to ranked documents.

    Non-thread documents: ``aggregate_chunks`` (best chunk + second_chunk_weight × second).
    Threads: best question chunk + thread_answer_weight × best answer chunk. Both kinds are
    ranked together by (-score, doc row), so an index without threads ranks exactly as
    ``aggregate_chunks`` alone.
    """
    is_thread = np.fromiter(
        (index.docs[int(index.chunk_doc[r])].kind == THREAD_KIND for r in rows.tolist()),
        dtype=bool,
        count=len(rows),
    )
    if not is_thread.any():
        return aggregate_chunks(rows, scores, index.chunk_doc, second_weight=p.second_chunk_weight)
    ranked: list[DocScore] = aggregate_chunks(
        rows[~is_thread],
        scores[~is_thread],
        index.chunk_doc,
        second_weight=p.second_chunk_weight,
    )
    parts: dict[int, dict[bool, tuple[float, int]]] = {}
    for row, score in zip(rows[is_thread].tolist(), scores[is_thread].tolist(), strict=True):
        doc = int(index.chunk_doc[row])
        best = parts.setdefault(doc, {})
        answer = is_answer_chunk(index, row)
        if answer not in best:  # rows arrive best first
            best[answer] = (score, row)
    for doc, best in parts.items():
        q, a = best.get(False), best.get(True)
        top = q or a
        assert top is not None
        ranked.append(
            _ThreadScore(
                doc=doc,
                score=(q[0] if q else 0.0) + p.thread_answer_weight * (a[0] if a else 0.0),
                best_chunk=top[1],
                best=top[0],
                question=q[0] if q else None,
                answer=a[0] if a else None,
            )
        )
    ranked.sort(key=lambda d: (-d.score, d.doc))
    return ranked


def confidence(hits: list[Hit], p: SearchParams) -> float:
    """Probability-like score that the top document answers the question.

    A logistic model over four signals of the top hit: its best chunk's cosine similarity,
    whether dense and lexical search each put it in their top 3, the strength of an API-symbol
    mention of it, and its fused-score margin over the runner-up. Weights were fitted on the
    development questions (leave-one-out AUC 0.80 for "top-1 is relevant"; BENCHMARKS.md) and
    rounded; they are settings, so an operator can refit them on their room's data.
    """
    if not hits:
        return 0.0
    top = hits[0]
    cos = top.dense if top.dense is not None else 0.0
    agree = (top.dense_rank or 99) <= 3 and (top.lexical_rank or 99) <= 3
    strength = top.symbol.strength if top.symbol else 0.0
    if len(hits) == 1:
        margin = 1.0
    elif top.score <= 0:
        margin = 0.0  # nothing scored: no evidence of a clear winner
    else:
        margin = (top.score - hits[1].score) / top.score
    z = (
        p.conf_bias
        + p.conf_cosine * cos
        + p.conf_agreement * agree
        + p.conf_symbol * strength
        + p.conf_margin * margin
    )
    return sigmoid(z)


class Retriever:
    """An encoder plus a loaded index: text in, ranked documents out (synchronous)."""

    def __init__(self, index: LoadedIndex, encoder: Encoder, params: SearchParams | None = None):
        if encoder.name != index.model:
            from bot.errors import IndexCorruptError

            raise IndexCorruptError(
                f"index {index.version} was built with model {index.model!r} but the configured "
                f"model is {encoder.name!r}: rebuild the index or change SUPPORTBOT_EMBEDDING_MODEL"
            )
        self.index = index
        self.encoder = encoder
        self.params = params or SearchParams()

    def with_index(self, index: LoadedIndex) -> Retriever:
        return Retriever(index, self.encoder, self.params)

    def with_params(self, **changes: object) -> Retriever:
        return Retriever(self.index, self.encoder, replace(self.params, **changes))  # type: ignore[arg-type]

    def search(self, query: str, *, mode: Mode = "hybrid", k: int = 10) -> SearchResult:
        vector = None
        if mode != "lexical":
            prose, code = clean_query(query)
            text = dense_query_text(prose, code, max_words=self.params.dense_query_words)
            vector = self.encoder.encode([text or query[:500]])[0]
        return search(self.index, query, vector, mode=mode, k=k, params=self.params)
